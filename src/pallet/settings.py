"""Pallet's one settings object, built once at start-up and passed explicitly.

Values come, highest priority first, from keyword arguments, `PALLET_*` environment
variables, and the TOML file named by `PALLET_CONFIG` (if any). Every field is documented in
docs/admin.md; a test keeps the two in step.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource
from pydantic_settings import SettingsConfigDict, TomlConfigSettingsSource

# A list of directories: decoded by `_directories`, not by pydantic-settings, whose error
# for `PALLET_ALLOWED_EXPORT_DIRS=/srv/x` said only "error parsing value".
Directories = Annotated[list[Path], NoDecode]

# A plain host[:port]: a DNS name or IPv4 address, or an IPv6 address in brackets. What the
# content app accepts in a Host header and in `content_origin`, which it writes into files.
HOST_PORT = (r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
             r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])"
             r"(?::[0-9]{1,5})?")
_ORIGIN = re.compile(rf"https?://{HOST_PORT}", re.ASCII)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "pallet"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PALLET_", extra="forbid")

    data_dir: Path = Field(default_factory=_default_data_dir,
                           description="Directory for the SQLite database, artifacts and uploads.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in data_dir.")
    host: str = Field("127.0.0.1", description="Address the server listens on.")
    port: int = Field(24817, ge=1, le=65535, description="Port the server listens on.")
    workers: int = Field(2, ge=0, le=64, description="Worker threads in `pallet serve`.")
    worker_heartbeat_seconds: float = Field(5.0, gt=0, description="How often a worker reports it is alive.")
    worker_timeout_seconds: float = Field(30.0, gt=0, description="Silence after which a worker is dead and its tasks fail.")
    task_poll_seconds: float = Field(0.5, gt=0, description="How often an idle worker looks for work.")
    admin_password: str = Field("", description="Password for the first admin; generated and printed if empty.")
    max_upload_size: int = Field(64 * 2**30, gt=0, description="Largest upload accepted, in bytes.")
    max_upload_chunk_size: int = Field(64 * 2**20, gt=0, description="Largest single upload chunk, in bytes.")
    max_request_size: int = Field(128 * 2**20, gt=0, description="Largest API request body other than an upload chunk, in bytes.")
    auth_cache_seconds: float = Field(300.0, ge=0, description="How long a verified password is remembered, so basic auth does not re-hash on every request.")
    allowed_import_dirs: Directories = Field(default_factory=list, description="Directories that `file://` remotes and imports may read from, as a JSON list (or one plain path); links are resolved before the check.")
    allowed_export_dirs: Directories = Field(default_factory=list, description="Directories that exporters may write to, as a JSON list (or one plain path); links are resolved before the check.")
    import_streams: int = Field(4, ge=1, le=1000, description="Streamed imports (`POST /importers/{name}/import-stream`) a server process runs at once, each on a thread of its own; more are refused with 503, so they never take the threads other requests need.")
    import_stream_idle_seconds: float = Field(60.0, gt=0, description="How long a streamed import waits for the next bytes of its request body; then it fails, freeing its locks.")
    import_reserve_bytes: int = Field(256 * 2**20, ge=0, description="Free space an import leaves on the artifact store's file system: it stops with a clear error, changing nothing, rather than fill the disk.")
    content_origin: str = Field("", description="The content app's origin as clients reach it (`https://pallet.example` or `http://host:port`, no path), used in the files it generates, such as a yum distribution's config.repo; empty: taken from each request's scheme and Host header (refused unless a plain host[:port]).")
    content_cache_seconds: float = Field(2.0, ge=0, description="How long a content-app process trusts its cached look-ups before one query checks whether anything it serves changed (changes made in the same process show at once).")
    content_index_bytes: int = Field(256 * 2**20, ge=0, description="Memory a content-app process gives the path indexes of what it serves (about 67 bytes a file; the least used dropped first). A source larger than this is served by queries; 0: no indexes.")
    publication_grace_seconds: float = Field(300.0, ge=0, description="How long a superseded publication of a repository keeps serving paths the newest one lacks, so downloads in flight finish.")
    remote_cooldown_seconds: float = Field(600.0, ge=0, description="After a remote file's bytes failed verification, how long it is not fetched again.")
    orphan_protection_seconds: float = Field(86400.0, ge=0, description="Default age below which orphan cleanup keeps unreferenced content and artifacts.")
    max_index_size: int = Field(1 << 30, gt=0, description="Largest remote index file (such as a PULP_MANIFEST) a sync reads, in bytes.")
    log_level: str = Field("info", description="Logging level: debug, info, warning or error.")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings,
                                   env_settings, dotenv_settings, file_secret_settings
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("PALLET_CONFIG")
        if config:
            if not Path(config).is_file():
                raise ValueError(f"PALLET_CONFIG names {config}, which is not a readable file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)

    @field_validator("allowed_import_dirs", "allowed_export_dirs", mode="before")
    @classmethod
    def _directories(cls, value: Any) -> Any:
        """From the environment: a JSON list of paths, or one plain path."""
        if not isinstance(value, str):
            return value  # a TOML list, or keyword arguments
        text = value.strip()
        if not text:
            return []
        if not text.startswith(("[", "{", '"')):
            return [text]
        try:
            paths = json.loads(text)
        except ValueError:
            paths = None
        if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
            raise ValueError(f"expected a JSON list of paths such as '[\"/srv/export\"]', "
                             f"or one plain path; got {text[:100]!r}")
        return paths

    @field_validator("content_origin")
    @classmethod
    def _origin(cls, value: str) -> str:
        """scheme://host[:port] and nothing else: it is written into generated files."""
        value = value.strip().rstrip("/")
        if value and _ORIGIN.fullmatch(value) is None:
            raise ValueError(f"expected an origin such as 'https://pallet.example' or "
                             f"'http://10.0.0.5:24817' (no path); got {value[:100]!r}")
        return value

    @model_validator(mode="after")
    def _fill_database_url(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'pallet.db'}"
        return self

    @model_validator(mode="after")
    def _timeout_above_heartbeat(self) -> "Settings":
        if self.worker_timeout_seconds < 3 * self.worker_heartbeat_seconds:
            raise ValueError("worker_timeout_seconds must be at least three heartbeats "
                             f"({3 * self.worker_heartbeat_seconds:g} s), or live workers "
                             "would be declared dead")
        return self

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"
