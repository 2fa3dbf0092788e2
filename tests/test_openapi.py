"""The OpenAPI document says what the API answers: the errors of each operation in the one
error shape, no 422, how to authenticate; and methods a path does not answer get 405 with
`Allow`."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conftest import ADMIN_PASSWORD, basic

# An archive body is bytes, as schemathesis sends for octet-stream.
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
from pallet.auth.service import get_user


@pytest.fixture
def document(client) -> dict:
    return client.get("/api/v1/openapi.json").json()


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_no_operation_documents_422_and_errors_have_the_one_shape(document):
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in operations(document):
        assert "422" not in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)


def test_each_operation_documents_the_errors_it_returns(client, document):
    responses = {(path, method): set(operation["responses"])
                 for path, method, operation in operations(document)}
    assert {"400", "401", "403", "404", "409", "413", "503"} <= responses[
        ("/api/v1/exporters", "post")]
    assert {"400", "401", "404", "409"} <= responses[("/api/v1/repositories", "post")]
    assert "403" not in responses[("/api/v1/repositories", "get")]  # every role may read
    assert {"401", "400"} <= responses[("/api/v1/repositories", "get")]
    assert not {"400", "401", "403"} & responses[("/api/v1/status", "get")]
    # What is documented is what comes back.
    client.post("/api/v1/users", json={"username": "vic", "password": "viewer-pass",
                                       "roles": ["viewer"]})
    viewer = basic("vic", "viewer-pass")
    answers = {("/api/v1/exporters", "post"): client.post(
                   "/api/v1/exporters", json={"name": "e"}, headers=viewer),
               ("/api/v1/repositories", "get"): client.get(
                   "/api/v1/repositories", headers={"Authorization": "Basic eDp5"}),
               ("/api/v1/repositories/{name}", "get"): client.get("/api/v1/repositories/no"),
               ("/api/v1/repositories", "post"): client.post("/api/v1/repositories",
                                                             json={"name": 1})}
    for (path, method), response in answers.items():
        assert str(response.status_code) in responses[(path, method)], (path, response.text)
    assert {answer.status_code for answer in answers.values()} == {400, 401, 403, 404}


def test_the_document_says_how_to_authenticate(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["basic"]["scheme"] == "basic" and schemes["bearer"]["scheme"] == "bearer"
    security = {(path, method): operation.get("security")
                for path, method, operation in operations(document)}
    # The role names the permission the operation needs (OpenAPI 3.1 allows roles there).
    assert security[("/api/v1/repositories", "get")] == [{"basic": ["read"]},
                                                         {"bearer": ["read"]}]
    assert security[("/api/v1/exporters", "post")] == [{"basic": ["export"]},
                                                       {"bearer": ["export"]}]
    assert security[("/api/v1/status", "get")] is None


def test_a_method_a_path_does_not_answer_gets_405_with_allow(client):
    response = client.request("TRACE", "/api/v1/repositories")
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "GET, POST" in response.json()["error"]["message"]
    assert client.request("PUT", "/api/v1/repositories/web").headers["allow"] == \
        "DELETE, GET, PATCH"
    # A literal segment names its own operations, not a template's: /tasks/purge is POST.
    assert client.request("TRACE", "/api/v1/tasks/purge").headers["allow"] == "POST"


# -- schemathesis against the document --------------------------------------------------------

@pytest.fixture
def admin_kept(runtime):
    """Put the admin back as it was after each generated request: a generated PATCH may
    change its password, and every later request would then be a 401."""
    with runtime.db.read() as session:
        admin = get_user(session, "admin")
        kept = admin.password_hash, list(admin.roles), admin.is_active

    def restore() -> None:
        with runtime.db.write() as session:
            admin = get_user(session, "admin")
            admin.password_hash, admin.roles, admin.is_active = kept
    return restore


@pytest.mark.slow
def test_schemathesis_finds_no_mismatch_with_the_document(client, admin_kept):
    """A bounded, deterministic run (derandomized, a few examples per operation) of every
    schemathesis check but one: positive data acceptance, since the API refuses more than
    a schema can say (names, paths, references that must exist), each with a documented 400
    or 404."""
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", client.app)
    auth = basic("admin", ADMIN_PASSWORD)
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=3, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])
        def check(case) -> None:
            response = case.call(headers=auth)
            admin_kept()
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

        check()
