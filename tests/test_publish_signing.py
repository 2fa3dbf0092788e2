"""The signing seam of publishing (`pallet.plugin.Signer`, `MetadataOutput.signer`): the rpm
publisher signs repomd.xml when a signer is given, byte for byte with a test signer, with a
real OpenPGP signature by gpg (a throw-away key in a temporary GNUPGHOME, verified by gpg
with nothing but the published key), and dnf checks it through config.repo
(repo_gpgcheck=1) over a real `pallet serve`, refusing a signature that does not match.

Nothing in Pallet makes a signer yet (access control will bring signing keys), so the
tests hand one to `publications.service.publish` directly."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from pallet.plugins.rpm.publish import KEY, REPOMD, SIGNATURE
from pallet.publications.service import metadata_files, publish
from pallet.repositories.service import get_repository
from pallet.repositories.versions import latest_version
from pallet.runtime import Runtime
from pallet.settings import Settings
from tests.conftest import wait_for_task
from tests.http_fixtures import file_server  # noqa: F401 - the fixture
from tests.servers import servers  # noqa: F401 - the fixture
from tests.rpm_tools import Dnf, build_rpm, make_repository, require, run

API = "/api/v1"
C = "/pallet/content"


class EchoSigner:
    """A test signer whose output says exactly what it signed."""

    def __init__(self) -> None:
        self.signed: list[bytes] = []

    def sign(self, data: bytes) -> bytes:
        self.signed.append(data)
        return b"SIGNATURE OF " + hashlib.sha256(data).hexdigest().encode() + b"\n"

    def public_key(self) -> bytes:
        return b"THE PUBLIC KEY\n"


class GpgSigner:
    """`gpg --detach-sign --armor` with a throw-away ed25519 key in a temporary GNUPGHOME
    (short, under /tmp: gpg-agent's socket path has a length limit)."""

    def __init__(self, uid: str = "Pallet Tests <signing@pallet.invalid>") -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pallet-gpg-"))
        self.gpg("--quick-generate-key", uid, "ed25519", "sign", "never")

    def gpg(self, *args: str, data: bytes | None = None) -> bytes:
        result = subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", *args], input=data, capture_output=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed: {result.stderr.decode()}")
        return result.stdout

    def sign(self, data: bytes) -> bytes:
        return self.gpg("--detach-sign", "--armor", "--output", "-", data=data)

    def public_key(self) -> bytes:
        return self.gpg("--export", "--armor")

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, timeout=30)
        shutil.rmtree(self.home, ignore_errors=True)


class WrongSigner(GpgSigner):
    """Signs something other than what it is given: a signature that does not match."""

    def sign(self, data: bytes) -> bytes:
        return super().sign(data + b"tampered")


@pytest.fixture
def gpg_signer():
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    signer = GpgSigner()
    yield signer
    signer.close()


def gpg_verify(tmp_path: Path, key: bytes, signature: bytes, data: bytes) -> str:
    """gpg --verify in a fresh GNUPGHOME holding nothing but `key`; gpg's report."""
    home = Path(tempfile.mkdtemp(prefix="pallet-gpgv-"))
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        for name, content in {"key.asc": key, "repomd.xml.asc": signature,
                              "repomd.xml": data}.items():
            (folder / name).write_bytes(content)
        base = ["gpg", "--homedir", str(home), "--batch"]
        subprocess.run([*base, "--import", str(folder / "key.asc")], check=True,
                       capture_output=True, timeout=60)
        result = subprocess.run([*base, "--verify", str(folder / "repomd.xml.asc"),
                                 str(folder / "repomd.xml")], capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        return result.stderr.decode()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


# -- in process -------------------------------------------------------------------------------

def synced(client, url: str, name: str = "el") -> None:
    """An rpm repository `name` synced from `url`, not auto-published."""
    for path, body in (("/remotes", {"name": name, "url": url, "type": "rpm"}),
                       ("/repositories", {"name": name, "type": "rpm", "remote": name})):
        response = client.post(f"{API}{path}", json=body)
        assert response.status_code == 201, response.text
    task = wait_for_task(client, client.post(f"{API}/repositories/{name}/sync",
                                             json={}).json()["href"], timeout=120)
    assert task["state"] == "completed", task


def published_files(runtime, signer, options=None, name: str = "el") -> dict[str, bytes]:
    """Publish the newest version of `name` with `signer`; its metadata files' bytes."""
    with runtime.db.write() as session:
        repository = get_repository(session, name)
        publication, created = publish(session, runtime.plugins, runtime.storage, repository,
                                       latest_version(session, repository), options,
                                       signer=signer)
        assert created
        files = metadata_files(session, [publication.id])[publication.id]
        return {path: runtime.storage.path(sha256).read_bytes() for path, sha256, _ in files}


@pytest.fixture
def el(client, workers, file_server, tmp_path):
    require("rpmbuild", "createrepo_c")
    rpms = tmp_path / "rpms"
    b = build_rpm(rpms, "b", "1.0")
    a = build_rpm(rpms, "a", "1.0", requires=["b >= 1.0"])
    synced(client, file_server(make_repository(tmp_path / "upstream", [a, b])).url)


def test_the_rpm_publisher_signs_exactly_repomd_xml(runtime, el):
    unsigned = published_files(runtime, None)
    assert REPOMD in unsigned and SIGNATURE not in unsigned and KEY not in unsigned
    signer = EchoSigner()
    signed = published_files(runtime, signer, {"compression": "xz"})
    assert signer.signed == [signed[REPOMD]]
    assert signed[SIGNATURE] == (b"SIGNATURE OF "
                                 + hashlib.sha256(signed[REPOMD]).hexdigest().encode() + b"\n")
    assert signed[KEY] == b"THE PUBLIC KEY\n"


def test_a_real_gpg_signature_verifies_with_the_published_key(runtime, el, gpg_signer,
                                                               tmp_path):
    files = published_files(runtime, gpg_signer)
    assert files[SIGNATURE].startswith(b"-----BEGIN PGP SIGNATURE-----")
    assert files[KEY].startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    report = gpg_verify(tmp_path, files[KEY], files[SIGNATURE], files[REPOMD])
    assert "Good signature" in report and "signing@pallet.invalid" in report, report
    with pytest.raises(AssertionError, match="BAD signature"):
        gpg_verify(tmp_path, files[KEY], files[SIGNATURE], files[REPOMD] + b" ")


# -- dnf with repo_gpgcheck=1 against a real pallet serve ------------------------------------

def dnf_with_reposdir(dnf: Dnf, reposdir: Path, *args: str, check: bool = True):
    require("dnf")
    return run(["dnf", f"--installroot={dnf.installroot}",
                f"--config={dnf.config / 'dnf.conf'}", f"--setopt=reposdir={reposdir}",
                f"--setopt=varsdir={dnf.config / 'vars'}", "--releasever=1", "--noplugins",
                "-y", *args], home_dir=dnf.config / "home", check=check)


@pytest.mark.slow
def test_dnf_checks_the_signed_repomd_through_config_repo(servers, file_server, tmp_path,
                                                          gpg_signer):
    from tests.test_cli import PASSWORD

    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    rpms = tmp_path / "rpms"
    upstream = file_server(make_repository(tmp_path / "upstream", [
        build_rpm(rpms, "b", "1.0"), build_rpm(rpms, "a", "1.0", requires=["b >= 1.0"])]))
    server = servers.start("pallet")
    api = httpx.Client(base_url=server.url, auth=("admin", PASSWORD), timeout=60)
    for name in ("good", "bad"):
        synced(api, upstream.url, name)
    # Signed publications, made beside the server on its database and store (nothing in
    # Pallet makes a signer yet).
    runtime = Runtime.create(Settings(data_dir=server.data_dir,
                                      database_url=server.env["PALLET_DATABASE_URL"]))
    wrong = WrongSigner()
    try:
        published_files(runtime, gpg_signer, name="good")
        published_files(runtime, wrong, name="bad")
    finally:
        runtime.close()
        wrong.close()
    results = {}
    try:
        check_both(api, server, tmp_path, results)
    finally:  # dnf's gpgme leaves a gpg-agent on each repository's keyring
        for dnf, _ in results.values():
            for keyring in (dnf.installroot / "var/cache/dnf").glob("*/pubring"):
                subprocess.run(["gpgconf", "--homedir", str(keyring), "--kill", "all"],
                               capture_output=True, timeout=30)
    good, _ = results["good"]
    assert good.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}
    bad, refused = results["bad"]
    assert refused.returncode != 0, refused.describe()
    assert "GPG signature verification error" in refused.stderr, refused.describe()
    assert not (bad.installroot / "usr/share/a").exists()


def check_both(api: httpx.Client, server, tmp_path: Path, results: dict) -> None:
    """config.repo of the distributions `good` and `bad`, and dnf installing `a` with it:
    {name: (Dnf, dnf's result)}."""
    for name in ("good", "bad"):
        response = api.post(f"{API}/distributions", json={"name": name, "base_path": name,
                                                    "repository": name})
        assert response.status_code == 201, response.text
        base = f"{server.url}{C}/{name}/"
        repo_file = httpx.get(f"{base}config.repo")
        assert repo_file.status_code == 200
        assert b"\nrepo_gpgcheck=1\n" in repo_file.content, repo_file.text
        assert f"\ngpgkey={base}repodata/repomd.xml.key\n".encode() in repo_file.content
        reposdir = tmp_path / f"reposdir-{name}"
        reposdir.mkdir()
        (reposdir / f"{name}.repo").write_bytes(repo_file.content)
        dnf = Dnf(tmp_path / f"root-{name}")
        results[name] = (dnf, None)
        results[name] = (dnf, dnf_with_reposdir(dnf, reposdir, "install", "a",
                                                check=name == "good"))
