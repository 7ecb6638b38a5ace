"""Security headers on every response (pages, API, static files, errors), as a plain ASGI
middleware so that it never buffers the live stream: a Content-Security-Policy that allows
scripts and styles from this origin only (no inline script, no inline style attribute, no
eval), no framing (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, and
``Cache-Control: no-store`` on API answers that do not set their own. The interactive API
docs (/docs) load Swagger UI from this server (its files come with the fastapi-offline package,
mounted at /static/swagger: no CDN, so /docs works without internet); their policy allows only
inline styles, which Swagger UI sets, for that page only."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
       " form-action 'self'; frame-ancestors 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self';"
            " style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
            " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
            " frame-ancestors 'none'")
DOCS_PATH = "/docs"
_COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def headers_for(path: str, existing: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response's headers with ours added (a header the route set itself is kept)."""
    names = {name.lower() for name, _ in existing}
    csp = DOCS_CSP if path == DOCS_PATH else CSP
    extra = [(b"content-security-policy", csp.encode()), *_COMMON]
    if path.startswith("/api/"):
        extra.append((b"cache-control", b"no-store"))
    return existing + [(n, v) for n, v in extra if n not in names]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = headers_for(path, list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, send_with_headers)
