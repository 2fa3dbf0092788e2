"""The content app as its own process, under Granian when it is installed: it hands files
to the kernel (`http.response.pathsend`), where uvicorn copies them through Python."""

from __future__ import annotations

from pallet.runtime import Runtime
from pallet.settings import Settings


def create() -> object:
    """Granian's app factory: the settings come from the environment, as for every process."""
    from pallet.contentapp.app import ContentApp

    return ContentApp(Runtime.create(Settings()))
