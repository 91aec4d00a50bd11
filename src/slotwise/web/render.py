"""Templates, filters and one-shot flash messages for the customer pages."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from slotwise import __version__
from slotwise.models import WebSession
from slotwise.money import format_amount

HERE = Path(__file__).parent
FlashKind = Literal["success", "error", "info"]


def long_date(value: datetime | date | None) -> str:
    """``Dec 15, 2026`` (UTC dates: billing dates are calendar dates in UTC)."""
    if value is None:
        return ""
    return f"{value:%b} {value.day}, {value.year}"


def money(amount: int | None, currency: str = "usd") -> str:
    return "" if amount is None else format_amount(amount, currency)


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(money=money, long_date=long_date)
    env.globals.update(plural=plural, version=__version__)
    return env


templates = Jinja2Templates(env=_environment())


@dataclass(frozen=True, slots=True)
class Flash:
    kind: FlashKind
    text: str
    detail: str | None = None
    link_href: str | None = None
    link_label: str | None = None


# The messages a page reached without a session can show, chosen by ``?notice=<code>``: the code
# picks one of these fixed texts, so no text from a request is ever shown as the site's own.
NOTICES: dict[str, Flash] = {
    "signed-out": Flash("info", "You've been signed out."),
    "invitation-invalid": Flash("error", "This invitation is no longer valid.",
                                "Ask your organization for a new invitation, or sign in if you already joined."),
    "invitation-email-taken": Flash("error", "The invited email already has an account.",
                                    "Sign in with that email instead."),
    "invitation-withdrawn": Flash("error", "That email already has an account, so this invitation was withdrawn.",
                                  "Sign in with that email, or ask for an invitation to another address."),
    "invitation-failed": Flash("error", "The invitation could not be accepted.",
                               "Ask your organization for a new invitation."),
}


def notice_flash(code: str) -> Flash | None:
    return NOTICES.get(code)


def is_site_path(target: str | None) -> bool:
    """A path on this site: never ``//host``, a scheme (``javascript:``), a backslash or a control
    character, which a browser could read as another place."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    return not any(ch == "\\" or ch < " " or ch == "\x7f" for ch in target)


def leave_flash(session: WebSession, flash: Flash | None) -> None:
    """Keep ``flash`` on the signed-in session for the next page to show once."""
    session.flash = None if flash is None else json.dumps(asdict(flash))


def take_flash(session: WebSession) -> Flash | None:
    """The message left for this page (then forgotten). Written only by ``leave_flash``, yet read
    defensively: anything malformed is dropped, and a link shows only if it stays on this site."""
    raw, session.flash = session.flash, None
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in ("success", "error", "info"):
        return None
    fields = {k: data.get(k) for k in ("text", "detail", "link_href", "link_label")}
    if not isinstance(fields["text"], str) or not all(v is None or isinstance(v, str) for v in fields.values()):
        return None
    href, label = fields["link_href"], fields["link_label"]
    if not is_site_path(href) or not label:
        href = label = None
    return Flash(data["kind"], fields["text"], fields["detail"], href, label)


def redirect(to: str) -> RedirectResponse:
    """Post/Redirect/Get (a message for the next page goes on the session: ``leave_flash``)."""
    return RedirectResponse(to, status_code=303)


def render(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """A page. A signed-in page (``page`` in the context) shows the flash message the previous
    redirect left on its session, then forgets it; other pages show only a ``flash`` they are given."""
    page = context.get("page")
    flash = take_flash(page.session) if page is not None and "flash" not in context else None
    response = templates.TemplateResponse(request, name, {"flash": flash, **context}, status_code=status_code)
    _harden(response)
    return response


def _harden(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
