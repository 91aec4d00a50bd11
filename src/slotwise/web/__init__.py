"""The customer pages: sign-in, Billing → Add-ons & Extras, billing overview, plans, team, agents.

Server-rendered with Jinja2; the only JavaScript opens dialogs and refreshes their numbers from the
same preview the commit uses. Every number shown comes from the services.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response

from slotwise.web import auth, billing, portal, team
from slotwise.web.deps import CsrfRejected, LoginRequired
from slotwise.web.render import HERE, render


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their two page-level guards to ``app``."""
    for module in (auth, billing, portal, team):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, _: Exception) -> Response:
        return render(request, "error.html", {
            "title": "This form has expired",
            "message": "The form was sent without its security token, so nothing was changed. "
                       "Go back, reload the page and try again.",
        }, status_code=403)
