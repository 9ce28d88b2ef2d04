"""`mlxdraft serve`: one target with one drafting method behind an OpenAI-compatible HTTP server
(chat and text completions, streamed or not). The HTTP stack (Starlette, uvicorn) is the optional
extra `mlxdraft[serve]`; this package imports it only when a server starts."""

from __future__ import annotations

import importlib.util

from ..errors import MissingDependencyError
from .setup import ServedModel, ServedSetup, load_served, setup_from_results

__all__ = ["ServedModel", "ServedSetup", "load_served", "require_server_stack", "setup_from_results"]

SERVER_PACKAGES = ("starlette", "uvicorn")


def require_server_stack() -> None:
    """Raise MissingDependencyError (one Error: line naming the extra) unless Starlette and uvicorn import."""
    missing = [name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(f"mlxdraft serve needs {' and '.join(missing)}, which "
                                     f"{'is' if len(missing) == 1 else 'are'} not installed: "
                                     "pip install 'mlxdraft[serve]'")
