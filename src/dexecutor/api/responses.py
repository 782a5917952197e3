"""A JSON response that writes decimals as exact numbers (never through a float)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as _StarletteJSON

from dexecutor import jsoncodec


class JSONResponse(_StarletteJSON):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps(content)
