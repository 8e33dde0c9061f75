"""The NOC page: one static HTML file with its script and stylesheet, no build step, no CDN.

The page itself holds no data, so it is served without a token; the script calls `/v1/fleet`
with the token the operator enters (kept in sessionStorage). The Content-Security-Policy allows
only this origin, so nothing the page shows can load or send anything elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/noc")
def noc_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "noc.html",
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": CSP,
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )
