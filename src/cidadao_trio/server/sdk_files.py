"""The JavaScript SDK served at ``/sdk/<module>.js`` (issue 18), read once from the package.

``static/sdk`` is the SDK's one copy: ``clients/js/src`` is a symlink to it, so what npm
users import and what a page loads from the server are the same bytes.
"""

from __future__ import annotations

from importlib import resources

JAVASCRIPT = "text/javascript; charset=utf-8"
PREFIX = "/sdk/"


def _modules() -> dict[str, bytes]:
    folder = resources.files("cidadao_trio") / "static" / "sdk"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(".js")}


SDK: dict[str, bytes] = _modules()


def sdk_module(path: str) -> bytes | None:
    """The module at ``path`` (``/sdk/client.js``), or None: only files of the folder, by name."""
    return SDK.get(path[len(PREFIX):]) if path.startswith(PREFIX) else None
