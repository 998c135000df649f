"""The local speech server: the OpenAI audio API (plus language ID) and a web page.

Needs the ``server`` extra (``pip install mmspeech[server]``). ``create_app(settings)`` builds the
FastAPI app; ``mmspeech serve`` runs it with uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmspeech.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]

if TYPE_CHECKING:
    from mmspeech.server.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from mmspeech.server.cli import require_server_extra

        require_server_extra()
        from mmspeech.server.app import create_app

        return create_app
    raise AttributeError(f"module 'mmspeech.server' has no attribute {name!r}")
