"""The customer pages: sign-in, Billing → Add-ons & Extras, billing overview, usage, plans, team, agents.

Server-rendered with Jinja2; the only JavaScript opens dialogs and refreshes their numbers from the
same preview the commit uses, and draws the usage chart (uPlot, vendored under static/vendor) over
the table the page already shows. Every number shown comes from the services.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response

from slotwise.web import activity, auth, billing, billing_portal, checkout, credits, paid, paywall, portal, team, usage
from slotwise.web.deps import CsrfRejected, LoginRequired, PageNotFound
from slotwise.web.render import HERE, render


def _return_to(request: Request) -> str:
    """Where to go after signing in: this page, or for an expired form the page it was sent from
    (a POST's own address can't be revisited with GET)."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.path.startswith("/"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return "/billing/addons"


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their page-level guards to ``app``."""
    for module in (activity, auth, billing, billing_portal, checkout, credits, paid, paywall, portal, team, usage):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: Exception) -> Response:
        return RedirectResponse(f"/login?next={quote(_return_to(request), safe='')}", status_code=303)

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, _: Exception) -> Response:
        return render(request, "error.html", {
            "title": "This form has expired",
            "message": "The form was sent without its security token, so nothing was changed. "
                       "Go back, reload the page and try again.",
        }, status_code=403)

    @app.exception_handler(PageNotFound)
    async def page_not_found(request: Request, _: Exception) -> Response:
        return render(request, "error.html", {
            "title": "Page not found",
            "message": "There is nothing at this address. Check the link, or go back and try again.",
        }, status_code=404)
