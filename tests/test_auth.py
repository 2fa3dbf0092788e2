"""Users, the first admin, the password cache and token expiry."""

from datetime import timedelta

import pytest

from conftest import basic

from pallet.auth import passwords, service
from pallet.auth.models import ApiToken
from pallet.db.base import utcnow
from pallet.errors import Unauthorized


def test_first_admin_is_created_once_with_a_printed_password(runtime):
    with runtime.db.write() as session:
        password = service.ensure_first_admin(session)
    assert password and len(password) >= 16
    with runtime.db.write() as session:
        assert service.ensure_first_admin(session) is None
    cache = passwords.VerifiedCache(0)
    with runtime.db.read() as session:
        principal = service.authenticate_basic(session, cache, "admin", password)
    assert principal.roles == ("admin",) and "admin" in principal.permissions


def test_a_chosen_first_password_is_not_printed(runtime):
    with runtime.db.write() as session:
        assert service.ensure_first_admin(session, "chosen-password") is None
        assert passwords.check_password("chosen-password",
                                        service.get_user(session, "admin").password_hash)


def test_basic_auth_does_not_rehash_on_every_request(monkeypatch):
    stored = passwords.hash_password("correct horse")
    calls = []
    real = passwords.check_password
    monkeypatch.setattr(passwords, "check_password",
                        lambda password, hashed: calls.append(1) or real(password, hashed))
    cache = passwords.VerifiedCache(seconds=60)
    assert all(cache.check("u", "correct horse", stored) for _ in range(20))
    assert len(calls) == 1
    assert not cache.check("u", "wrong horse", stored)
    # A new password hash (the password changed) is not served from the cache.
    assert not cache.check("u", "correct horse", passwords.hash_password("another one"))


def test_expired_tokens_are_refused(runtime):
    with runtime.db.write() as session:
        user = service.create_user(session, username="t", password="long-enough", roles=["viewer"])
        row, token = service.create_token(session, user, name="short", expires_in_days=1)
    with runtime.db.read() as session:
        assert service.authenticate_token(session, token).username == "t"
    with runtime.db.write() as session:
        session.get(ApiToken, row.id).expires_at = utcnow() - timedelta(seconds=1)
    with runtime.db.read() as session, pytest.raises(Unauthorized, match="expired"):
        service.authenticate_token(session, token)


def test_the_last_admin_can_be_neither_demoted_deactivated_nor_deleted(client):
    refusals = [lambda: client.patch("/api/v1/users/admin", json={"roles": ["viewer"]}),
                lambda: client.patch("/api/v1/users/admin", json={"is_active": False}),
                lambda: client.delete("/api/v1/users/admin")]
    for refuse in refusals:
        response = refuse()
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "last_admin"
        assert "last active admin" in response.json()["error"]["message"]
    assert client.get("/api/v1/users/admin").json()["roles"] == ["admin"]
    assert client.get("/api/v1/users/admin").json()["is_active"] is True

    # With a second active admin, one may go; an inactive admin does not count.
    client.post("/api/v1/users", json={"username": "ann", "password": "long-enough",
                                       "roles": ["admin"]})
    client.post("/api/v1/users", json={"username": "old", "password": "long-enough",
                                       "roles": ["admin"]})
    assert client.patch("/api/v1/users/old", json={"is_active": False}).status_code == 200
    assert client.patch("/api/v1/users/admin", json={"roles": ["viewer", "exporter"]}
                        ).status_code == 200
    ann = basic("ann", "long-enough")  # admin is no admin now: ann does the rest
    assert client.delete("/api/v1/users/ann", headers=ann).status_code == 409
    assert client.patch("/api/v1/users/admin", json={"roles": ["admin"]},
                        headers=ann).status_code == 200
    assert client.delete("/api/v1/users/ann").status_code == 204
    # Reactivating an admin and keeping the roles of an admin are no change to refuse.
    assert client.patch("/api/v1/users/admin", json={"roles": ["admin", "viewer"],
                                                     "is_active": True}).status_code == 200
