"""Settings from the environment and a TOML file, with clear refusals."""

import pytest
from pydantic import ValidationError

from pallet.settings import Settings


def test_defaults_put_sqlite_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PALLET_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'pallet.db'}"
    assert settings.artifacts_dir == tmp_path / "artifacts"


def test_environment_beats_the_file(monkeypatch, tmp_path):
    config = tmp_path / "pallet.toml"
    config.write_text('port = 8080\nworkers = 5\nlog_level = "debug"\n')
    monkeypatch.setenv("PALLET_CONFIG", str(config))
    monkeypatch.setenv("PALLET_WORKERS", "3")
    settings = Settings()
    assert (settings.port, settings.workers, settings.log_level) == (8080, 3, "debug")
    assert Settings(port=9000).port == 9000


def test_bad_values_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("PALLET_PORT", "99999")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("PALLET_PORT")
    config = tmp_path / "pallet.toml"
    config.write_text("colour = 'red'\n")
    monkeypatch.setenv("PALLET_CONFIG", str(config))
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("PALLET_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="not a readable file"):
        Settings()
