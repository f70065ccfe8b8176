"""Cross-origin browsers (SPEC 8.1): Starlette's CORSMiddleware, configured strictly.

Only the exact origins of ``PORTAL_CORS_ORIGINS`` are answered, never ``*``; only POST
(GET is off for GraphQL, see README) with the ``Authorization`` and ``Content-Type``
headers. No cookies are used, so credentials are not allowed either: the staff token
travels in the ``Authorization`` header, which a page of another origin cannot read.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp

ALLOWED_METHODS = ("POST",)
ALLOWED_HEADERS = ("Authorization", "Content-Type")
# Browsers cap this anyway (Chromium: 2 h); 10 min keeps a changed list effective soon.
PREFLIGHT_MAX_AGE_SECONDS = 600


class StrictCORSMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=list(origins),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=False,
            expose_headers=("X-Request-Id",),
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        # Starlette lists the allowed methods and headers even to an origin it refuses;
        # an origin that is not listed learns nothing (SPEC 8.1: "nothing for other
        # origins").
        if not self.is_allowed_origin(request_headers["origin"]):
            return PlainTextResponse(
                "Disallowed CORS origin", status_code=400, headers={"Vary": "Origin"}
            )
        return super().preflight_response(request_headers)
