"""The billing portal's API (SPEC §12): billing details, invoice PDFs, cancel at period end and resume,
on both databases: roles, tenant isolation, validation codes, idempotency."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pypdf import PdfReader

from tests.factories import DECLINED_CARD, Api, error_of, set_card

DETAILS = {"email": "billing@acme.example", "company": "Acme Robotics GmbH",
           "address": "Müllerstraße 12\n10115 Berlin\nGermany"}


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)


class TestBillingDetails:
    def test_the_owner_saves_them_and_the_owner_and_admins_read_them(self, api: Api) -> None:
        org = api.create_org("pro")
        assert ok(org.get("/billing-details")) == {"email": None, "company": "", "address": ""}
        saved = ok(org.put("/billing-details", DETAILS))
        assert saved == DETAILS
        admin = org.add_member("admin")
        assert ok(org.get("/billing-details", token=admin["api_token"])) == DETAILS

    def test_blank_lines_and_spaces_are_trimmed_and_company_and_address_may_be_empty(self, api: Api) -> None:
        org = api.create_org("pro")
        saved = ok(org.put("/billing-details", {"email": "  ap@acme.example ", "company": "  ",
                                                "address": "  Line 1 \r\n\r\n Line 2  "}))
        assert saved == {"email": "ap@acme.example", "company": "", "address": "Line 1\nLine 2"}
        assert ok(org.put("/billing-details", {"email": "ap@acme.example"})) == {
            "email": "ap@acme.example", "company": "", "address": ""}

    def test_only_the_owner_changes_them(self, api: Api) -> None:
        org = api.create_org("pro")
        admin = org.add_member("admin")
        error = error_of(org.put("/billing-details", DETAILS, token=admin["api_token"]), 403, "owner_only")
        assert "Billing details are Owner Only" in error["message"]

    def test_members_can_not_read_them(self, api: Api) -> None:
        org = api.create_org("pro")
        member = org.add_member("member")
        error_of(org.get("/billing-details", token=member["api_token"]), 403, "forbidden")

    def test_another_organization_is_not_found(self, api: Api) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        error_of(other.get("/billing-details", token=org.token), 404, "not_found")
        error_of(other.put("/billing-details", DETAILS, token=org.token), 404, "not_found")
        assert ok(other.get("/billing-details"))["email"] is None

    @pytest.mark.parametrize(("body", "field"), [
        ({"email": ""}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": "two@at@example.com"}, "email"),
        ({"email": "x" * 250 + "@example.com"}, "email"),
        ({"email": "ap@acme.example", "company": "C" * 201}, "company"),
        ({"email": "ap@acme.example", "company": "Acme\x00"}, "company"),
        ({"email": "ap@acme.example", "address": "\n".join(["line"] * 7)}, "address"),
        ({"email": "ap@acme.example", "address": "A" * 501}, "address"),
        ({"email": "ap@acme.example", "address": "bell\x07"}, "address"),
    ])
    def test_invalid_details_are_refused_naming_the_field(self, api: Api, body: dict[str, str], field: str) -> None:
        org = api.create_org("pro")
        error = error_of(org.put("/billing-details", body), 422, "invalid_request")
        assert error["field"] == field
        assert ok(org.get("/billing-details"))["email"] is None  # nothing stored

    def test_a_malformed_body_is_invalid_request(self, api: Api) -> None:
        org = api.create_org("pro")
        error_of(org.put("/billing-details", {"company": "no email"}), 422, "invalid_request")
        error_of(org.put("/billing-details", {**DETAILS, "vat": "DE1"}), 422, "invalid_request")
        error_of(org.put("/billing-details", {"email": 5}), 422, "invalid_request")


class TestInvoicePdf:
    def test_a_paid_invoice_is_a_receipt_with_every_line_and_the_details(self, api: Api) -> None:
        org = api.create_org("pro")  # Nov 15 → Dec 15
        ok(org.put("/billing-details", DETAILS))
        api.clock_to("2026-11-26T12:00:00Z")
        added = ok(org.add_slots("agent_slots", 2))["invoice"]
        response = org.get(f"/invoices/{added['id']}/pdf")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        disposition = f'attachment; filename="slotwise-receipt-{added["number"]}.pdf"'
        assert response.headers["content-disposition"] == disposition
        assert response.content.startswith(b"%PDF-")
        text = pdf_text(response.content)
        name = ok(org.get())["name"]
        for expected in (name, "Acme Robotics GmbH", "Müllerstraße 12", "10115 Berlin", "Germany",
                         "billing@acme.example", f"Receipt #{added['number']}", "Issued: Nov 26, 2026",
                         "Paid: Nov 26, 2026", "Paid on Nov 26, 2026: $8.87",
                         "Billing period: Nov 15, 2026 – Dec 15, 2026", "19/30", "$7.00", "$8.87", "Total: $8.87"):
            assert expected in text, (expected, text)
        assert added["lines"][0]["description"].split(",")[0] in text

    def test_the_first_invoice_shows_each_line_and_the_total_is_the_sum(self, api: Api) -> None:
        org = api.create_org("pro")
        first = org.invoices()[-1]
        text = pdf_text(org.get(f"/invoices/{first['id']}/pdf").content)
        assert "30/30" in text and "$150.00" in text and "Total: $150.00" in text
        assert sum(line["amount"] for line in first["lines"]) == first["total"]

    def test_an_open_invoice_says_the_amount_due(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(set_card(org, DECLINED_CARD))
        api.clock_to("2026-12-15T10:00:00Z")
        renewal = org.invoices()[0]
        assert renewal["status"] == "open"
        response = org.get(f"/invoices/{renewal['id']}/pdf")
        assert 'filename="slotwise-invoice-' in response.headers["content-disposition"]
        text = pdf_text(response.content)
        assert f"Invoice #{renewal['number']}" in text and "Amount due: $150.00" in text
        assert "Receipt" not in text and "Paid:" not in text

    def test_admins_download_members_do_not(self, api: Api) -> None:
        org = api.create_org("pro")
        invoice = org.invoices()[0]
        admin, member = org.add_member("admin"), org.add_member("member")
        assert org.get(f"/invoices/{invoice['id']}/pdf", token=admin["api_token"]).status_code == 200
        error_of(org.get(f"/invoices/{invoice['id']}/pdf", token=member["api_token"]), 403, "forbidden")

    def test_another_organizations_invoice_is_not_found(self, api: Api) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        theirs = other.invoices()[0]
        error_of(org.get(f"/invoices/{theirs['id']}/pdf"), 404, "not_found")
        error_of(org.get("/invoices/inv_nothing/pdf"), 404, "not_found")
        error_of(other.get(f"/invoices/{theirs['id']}/pdf", token=org.token), 404, "not_found")

    def test_any_script_in_the_details_renders(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.put("/billing-details", {"email": "ap@acme.example", "company": "Ωmega Λtd — Прогресс",
                                        "address": "1 Rue de l'Église\n€ zone"}))
        text = pdf_text(org.get(f"/invoices/{org.invoices()[0]['id']}/pdf").content)
        assert "Ωmega Λtd — Прогресс" in text and "Église" in text


class TestCancelAndResume:
    def test_cancel_keeps_the_plan_to_the_period_end_and_twice_is_one_cancel(self, api: Api) -> None:
        org = api.create_org("pro")
        first = ok(org.post("/subscription/cancel"))
        assert first["kind"] == "cancel_scheduled"
        assert first["subscription"]["status"] == "active"
        assert first["subscription"]["cancel_at_period_end"] is True
        assert first["subscription"]["cancels_at"].startswith("2026-12-15T09:00:00")
        summary = org.summary()
        assert summary["plan"]["code"] == "pro" and summary["subscription"]["cancel_at_period_end"] is True
        again = ok(org.post("/subscription/cancel"))
        assert again["kind"] == "already_scheduled"
        assert again["subscription"] == first["subscription"]
        assert len(org.invoices()) == 1  # nothing billed, nothing refunded

    def test_resume_clears_it_and_resume_without_a_cancel_is_a_conflict(self, api: Api) -> None:
        org = api.create_org("pro")
        error = error_of(org.post("/subscription/resume"), 409, "cancellation_not_scheduled")
        assert "nothing to resume" in error["message"]
        ok(org.post("/subscription/cancel"))
        resumed = ok(org.post("/subscription/resume"))
        assert resumed["kind"] == "resumed"
        assert resumed["subscription"]["cancel_at_period_end"] is False
        assert resumed["subscription"]["cancels_at"] is None
        assert org.summary()["subscription"]["scheduled_plan"] is None
        error_of(org.post("/subscription/resume"), 409, "cancellation_not_scheduled")

    def test_a_scheduled_downgrade_is_not_a_cancel_and_a_cancel_replaces_it(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.post("/subscription", {"plan": "starter"}))
        error_of(org.post("/subscription/resume"), 409, "cancellation_not_scheduled")
        ok(org.post("/subscription/cancel"))
        assert org.summary()["subscription"]["scheduled_plan"] == "free"

    def test_only_the_owner_cancels_or_resumes(self, api: Api) -> None:
        org = api.create_org("pro")
        admin = org.add_member("admin")
        for action in ("cancel", "resume"):
            error = error_of(org.post(f"/subscription/{action}", token=admin["api_token"]), 403, "owner_only")
            assert "Subscription changes are Owner Only" in error["message"]
        assert org.summary()["subscription"]["cancel_at_period_end"] is False

    def test_another_organization_is_not_found(self, api: Api) -> None:
        org, other = api.create_org("pro"), api.create_org("pro")
        error_of(other.post("/subscription/cancel", token=org.token), 404, "not_found")
        assert other.summary()["subscription"]["cancel_at_period_end"] is False

    def test_free_has_nothing_to_cancel(self, api: Api) -> None:
        org = api.create_org("free")
        error_of(org.post("/subscription/cancel"), 409, "subscription_required")
        error_of(org.post("/subscription/resume"), 409, "subscription_required")

    def test_refused_while_more_is_used_than_free_allows(self, api: Api) -> None:
        org = api.create_org("pro")
        org.create_agents(3)
        error = error_of(org.post("/subscription/cancel"), 409, "below_usage")
        assert error["must_free"] == 2 and error["resource"] == "agents"
        assert "Archive or remove 2 agents first" in error["message"]
        assert org.summary()["subscription"]["cancel_at_period_end"] is False

    def test_held_add_ons_do_not_stop_a_cancel_but_usage_may_not_grow_past_free(self, api: Api) -> None:
        org = api.create_org("pro")
        ok(org.add_slots("agent_slots", 2))
        ok(org.post("/subscription/cancel"))
        org.create_agents(1)
        error_of(org.post("/agents", {"name": "One too many for Free"}), 409, "limit_reached")
        error_of(org.add_slots("agent_slots", 1), 409, "addon_unavailable")

    def test_an_idempotency_key_replays_the_first_answer(self, api: Api) -> None:
        org = api.create_org("pro")
        first = org.post("/subscription/cancel", key="cancel-1")
        replay = org.post("/subscription/cancel", key="cancel-1")
        assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json() == first.json()
        resumed = org.post("/subscription/resume", key="resume-1")
        assert resumed.json()["kind"] == "resumed"
        assert org.post("/subscription/resume", key="resume-1").json() == resumed.json()  # not a 409
        admin = org.add_member("admin")
        error_of(org.post("/subscription/cancel", token=admin["api_token"], key="cancel-1"), 403, "owner_only")


