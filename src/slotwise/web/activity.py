"""Activity (SPEC §14): the Owner's page of the audit trail — every billing change, newest first,
who made it, what it was in words, before → after, its amount and invoice; one kind or family at a
time, a page at a time (Newer / Older links, no JavaScript)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.responses import Response

from slotwise.errors import SlotwiseError
from slotwise.services import audit_log
from slotwise.services.audit_log import Entry
from slotwise.web import activity_words as words
from slotwise.web.deps import Page, PageDep
from slotwise.web.render import money, render

router = APIRouter(include_in_schema=False)
ACTIVITY = "/activity"
PAGE_SIZE = 25


@dataclass(frozen=True, slots=True)
class Row:
    entry: Entry
    who: str
    what: str
    changes: list[str]
    amount: str | None
    invoice_href: str | None


def row_of(entry: Entry, names: Mapping[str, str]) -> Row:
    amount = money(entry.amount, entry.currency or "usd") if entry.amount is not None else None
    return Row(entry, words.who(entry), words.what(entry, names), words.changes(entry), amount,
               f"/billing/invoices/{entry.invoice_id}" if entry.invoice_id else None)


def activity_url(kind: str = "", starting_after: str = "", ending_before: str = "") -> str:
    query = {k: v for k, v in (("kind", kind), ("starting_after", starting_after), ("ending_before", ending_before))
             if v}
    return ACTIVITY + (f"?{urlencode(query)}" if query else "")


def _refused(page: Page, title: str, message: str, status_code: int) -> Response:
    return render(page.request, "error.html", {"page": page, "nav": "activity", "title": title,
                                               "message": message}, status_code=status_code)


@router.get(ACTIVITY)
def activity_page(page: PageDep, kind: str = "", starting_after: str = "", ending_before: str = "") -> Response:
    if not page.is_owner:
        return _refused(page, "Owner Only", "Activity is Owner Only: it lists every change to your organization's "
                        "billing and who made it. Ask your organization owner.", 403)
    try:
        found = audit_log.entries_page(page.db, actor=page.actor, limit=PAGE_SIZE, after=starting_after or None,
                                       before=ending_before or None, kind=kind or None)
    except SlotwiseError as error:
        return _refused(page, "This page of activity does not exist",
                        f"{error.message} Start again from the newest activity.", error.status)
    names = audit_log.agent_names(page.db, org_id=page.org.id, entries=found.entries)
    rows = [row_of(e, names) for e in found.entries]
    return render(page.request, "activity.html", {
        "page": page, "nav": "activity", "rows": rows, "kind": kind,
        "kind_label": words.kind_label(kind) if kind else None, "options": words.kind_options(),
        "custom_kind": kind if kind and kind not in words.KIND_LABELS and kind not in dict(words.FAMILIES) else None,
        "older_href": activity_url(kind, starting_after=rows[-1].entry.id) if rows and found.has_more else None,
        "newer_href": activity_url(kind, ending_before=rows[0].entry.id) if rows and found.has_newer else None,
        "newest_href": activity_url(kind) if starting_after or ending_before else None,
    })
