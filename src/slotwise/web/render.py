"""Templates, filters and one-shot flash messages for the customer pages."""

from __future__ import annotations

import base64
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
from slotwise.money import format_amount
from slotwise.web.sessions import secure_cookies

HERE = Path(__file__).parent
FLASH_COOKIE = "slotwise_flash"
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


def _encode(flash: Flash) -> str:
    return base64.urlsafe_b64encode(json.dumps(asdict(flash)).encode()).decode()


def _decode(raw: str | None) -> Flash | None:
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return Flash(**{k: data.get(k) for k in ("kind", "text", "detail", "link_href", "link_label")})
    except (ValueError, TypeError):
        return None


def redirect(request: Request, to: str, flash: Flash | None = None) -> RedirectResponse:
    """Post/Redirect/Get: the next page shows ``flash`` once."""
    response = RedirectResponse(to, status_code=303)
    if flash is not None:
        response.set_cookie(FLASH_COOKIE, _encode(flash), path="/", httponly=True, samesite="lax",
                            secure=secure_cookies(request), max_age=60)
    return response


def render(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """A page, with the flash message left by the previous redirect (then forgotten)."""
    flash = _decode(request.cookies.get(FLASH_COOKIE))
    response = templates.TemplateResponse(request, name, {"flash": flash, **context}, status_code=status_code)
    if flash is not None or FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
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
