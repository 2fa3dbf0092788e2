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


def test_allowed_directories_take_a_json_list_or_one_plain_path(monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.setenv("PALLET_ALLOWED_EXPORT_DIRS", "/srv/x")
    monkeypatch.setenv("PALLET_ALLOWED_IMPORT_DIRS", '["/media/a", "/media/b"]')
    settings = Settings(data_dir=tmp_path)
    assert settings.allowed_export_dirs == [Path("/srv/x")]
    assert settings.allowed_import_dirs == [Path("/media/a"), Path("/media/b")]
    monkeypatch.setenv("PALLET_ALLOWED_EXPORT_DIRS", "")
    assert Settings(data_dir=tmp_path).allowed_export_dirs == []
    for broken in ('["/srv/x"', '{"a": 1}', '[1, 2]'):
        monkeypatch.setenv("PALLET_ALLOWED_EXPORT_DIRS", broken)
        with pytest.raises(ValidationError, match="JSON list"):
            Settings(data_dir=tmp_path)


def test_a_bad_allowed_directory_setting_is_one_line_naming_the_format(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PALLET_DATA_DIR": str(tmp_path), "PALLET_ALLOWED_EXPORT_DIRS":
           '["/srv/x"'}
    result = subprocess.run([sys.executable, "-m", "pallet.cli.main", "db", "current"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "allowed_export_dirs" in result.stderr and "JSON list" in result.stderr
