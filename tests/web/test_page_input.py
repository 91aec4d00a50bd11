"""Bad input on the pages gets the API's checks and a clear 4xx page, never a 500, on SQLite and
PostgreSQL: the invitation form, ids in page addresses, and quantities."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Api
from tests.web.test_sessions import PASSWORD, login, make_org, page_csrf


def _addon_slots(client: TestClient, org: dict[str, Any], code: str = "agent_slots") -> int:
    headers = {"Authorization": f"Bearer {org['owner']['api_token']}"}
    addons = client.get(f"/v1/organizations/{org['id']}/addons", headers=headers).json()
    addons = addons["data"] if isinstance(addons, dict) else addons
    return int(next(a for a in addons if a["code"] == code)["active_slots"])


def _invitation_link(client: TestClient) -> str:
    invited = client.post("/team/invitations", data={"email": "new@acme.test", "role": "member",
                                                     "csrf_token": page_csrf(client, "/team")})
    link = re.search(r"/invitations/inv_[\w-]+", invited.text)
    assert link is not None
    client.cookies.clear()
    return link.group(0)


def _accept(client: TestClient, link: str, **form: str) -> Any:
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get(link).text)
    assert csrf is not None
    return client.post(link, data={**form, "csrf_token": csrf.group(1)}, follow_redirects=False)


class TestInvitationForm:
    @pytest.mark.parametrize(("name", "password", "message"), [
        ("x" * 5000, "a-long-password", "Enter your name in up to 200 characters"),
        ("Nia\x00New", "a-long-password", "Enter your name in up to 200 characters"),
        ("Nia New", "p" * 257, "Choose a password of 8 to 256 characters."),
        ("Nia New", "short", "Choose a password of 8 to 256 characters."),
    ])
    def test_the_api_checks_apply_and_the_form_says_what_is_wrong(
        self, name: str, password: str, message: str, api: Api, client: TestClient
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        link = _invitation_link(client)
        refused = _accept(client, link, name=name, password=password)
        assert refused.status_code == 422
        assert message in refused.text
        assert 'action="' + link + '"' in refused.text  # the form again, to correct
        assert login(client, "new@acme.test", password).status_code == 401  # nobody joined
        client.cookies.clear()
        joined = _accept(client, link, name="Nia New", password="a-long-password")
        assert (joined.status_code, joined.headers["location"]) == (303, "/agents")  # still usable

    def test_an_expired_form_is_shown_again_with_the_reason(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        link = _invitation_link(client)
        client.get(link)
        refused = client.post(link, data={"name": "Nia", "password": "a-long-password", "csrf_token": "stale"})
        assert refused.status_code == 403
        assert "The form expired. Please try again." in refused.text


    def test_an_invitation_to_an_email_with_an_account_elsewhere_is_withdrawn(
        self, api: Api, client: TestClient
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        link = _invitation_link(client)
        api.create_org("pro", owner_email="NEW@acme.test")  # the invitee registers elsewhere
        client.cookies.clear()
        assert "no longer valid" in client.get(link).text  # the invitation went with it

    def test_accepting_an_invitation_made_to_a_registered_email_withdraws_it(
        self, api: Api, client: TestClient
    ) -> None:
        make_org(api)
        other = api.create_org("pro")
        taken = other.get("/members").json()["data"][0]["email"]
        login(client, "owner@acme.test")
        invited = client.post("/team/invitations", data={"email": taken, "role": "member",
                                                         "csrf_token": page_csrf(client, "/team")})
        assert f"{taken} was invited." in invited.text  # the same answer as for anyone
        link = re.search(r"/invitations/inv_[\w-]+", invited.text)
        assert link is not None
        client.cookies.clear()
        refused = _accept(client, link.group(0), name="Someone", password="a-long-password")
        assert refused.headers["location"] == "/login?notice=invitation-withdrawn"
        assert "this invitation was withdrawn" in client.get(refused.headers["location"]).text
        login(client, "owner@acme.test")
        assert taken not in client.get("/team").text  # its seat is free again


NUL_ADDRESSES = [("get", "/billing/invoices/%00"), ("post", "/agents/%00/archive"),
                 ("post", "/agents/%00/unarchive"), ("post", "/agents/%00/delete"),
                 ("post", "/team/members/%00/remove"), ("post", "/team/invitations/%00/revoke"),
                 ("post", "/billing/addons/%00/add"), ("post", "/billing/addons/%00/remove"),
                 ("post", "/billing/addons/%00/keep")]


class TestIdsInAddresses:
    @pytest.mark.parametrize(("method", "path"), NUL_ADDRESSES)
    def test_a_control_character_in_an_id_is_a_not_found_page(
        self, method: str, path: str, api: Api, client: TestClient
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        if method == "get":
            response = client.get(path)
        else:
            response = client.post(path, data={"csrf_token": page_csrf(client), "quantity": "1"},
                                   follow_redirects=False)
        assert response.status_code == 404
        assert "Page not found" in response.text

    def test_and_in_a_preview_call(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        response = client.post("/billing/addons/%00/preview", json={"action": "add", "quantity": 1},
                               headers={"X-CSRF-Token": page_csrf(client)})
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


class TestQuantities:
    @pytest.mark.parametrize("typed", ["²", "١٠", "1_0", "+3", " 3 x", "9" * 5000])
    def test_the_add_dialog_opens_at_one_for_a_quantity_that_is_not_digits(
        self, typed: str, api: Api, client: TestClient
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        response = client.get("/billing/addons", params={"add": "agent_slots", "quantity": typed})
        assert response.status_code == 200
        field = re.search(r'id="add-agent_slots-qty".*?value="([^"]*)"', response.text, re.S)
        assert field is not None and field.group(1) == "1"

    def test_digits_still_open_the_dialog_at_that_quantity(self, api: Api, client: TestClient) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        response = client.get("/billing/addons", params={"add": "agent_slots", "quantity": "3"})
        field = re.search(r'id="add-agent_slots-qty".*?value="([^"]*)"', response.text, re.S)
        assert field is not None and field.group(1) == "3"

    @pytest.mark.parametrize("typed", ["1_0", "١٠", "²", "+2", "2.0", ""])
    def test_the_add_form_refuses_anything_but_ascii_digits(self, typed: str, api: Api, client: TestClient) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        response = client.post("/billing/addons/agent_slots/add",
                               data={"quantity": typed, "csrf_token": page_csrf(client)})
        assert response.status_code == 200
        assert "Enter how many slots to add, in digits." in response.text
        assert _addon_slots(client, org) == 0  # nothing bought, nothing charged

    def test_the_remove_form_refuses_anything_but_ascii_digits(self, api: Api, client: TestClient) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        client.post("/billing/addons/agent_slots/add", data={"quantity": "3", "csrf_token": page_csrf(client)})
        response = client.post("/billing/addons/agent_slots/remove",
                               data={"quantity": "1_0", "csrf_token": page_csrf(client)})
        assert "Enter how many slots to remove, in digits." in response.text
        assert _addon_slots(client, org) == 3
        done = client.post("/billing/addons/agent_slots/remove",
                           data={"quantity": "2", "csrf_token": page_csrf(client)})
        assert "Slots removed successfully." in done.text


def _credits(client: TestClient, org: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {org['owner']['api_token']}"}
    body: dict[str, Any] = client.get(f"/v1/organizations/{org['id']}/credits", headers=headers).json()
    return body


class TestCreditForms:
    """Top Up Now and Auto-Recharge on the Billing page: the API's validators, a clear message, nothing
    half-written."""

    @pytest.mark.parametrize("typed", ["0", "101", "1_0", "١٠", "²", "+2", "2.0", "-1", "", "9" * 5000])
    def test_top_up_refuses_a_number_of_packs_that_is_not_1_to_100(
        self, typed: str, api: Api, client: TestClient
    ) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        response = client.post("/billing/credits/top-up", data={"packs": typed, "csrf_token": page_csrf(client)})
        assert response.status_code == 200
        assert "Enter how many packs to buy: a whole number from 1 to 100." in response.text
        assert _credits(client, org)["topup"]["remaining"] == 0  # nothing bought, nothing charged
        bought = client.post("/billing/credits/top-up", data={"packs": "2", "csrf_token": page_csrf(client)})
        assert "Credits added successfully." in bought.text
        assert _credits(client, org)["topup"]["remaining"] == 2000

    @pytest.mark.parametrize(("form", "message"), [
        ({"threshold": "-1"}, "Enter the threshold as a whole number of credits"),
        ({"threshold": "1_000"}, "Enter the threshold as a whole number of credits"),
        ({"threshold": "1000000001"}, "Enter the threshold as a whole number of credits"),
        ({"threshold": "9" * 5000}, "Enter the threshold as a whole number of credits"),
        ({"threshold": ""}, "Enter the threshold as a whole number of credits"),
        ({"max_per_month": "0"}, "Enter the max recharges per month as a whole number from 1 to 100."),
        ({"max_per_month": "101"}, "Enter the max recharges per month as a whole number from 1 to 100."),
        ({"max_per_month": "2.5"}, "Enter the max recharges per month as a whole number from 1 to 100."),
        ({"enabled": "yes"}, "Turn auto-recharge on or off with its switch."),
    ])
    def test_auto_recharge_refuses_bad_settings_and_keeps_the_old_ones(
        self, form: dict[str, str], message: str, api: Api, client: TestClient
    ) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        data = {"enabled": "on", "threshold": "250", "max_per_month": "4", **form, "csrf_token": page_csrf(client)}
        response = client.post("/billing/credits/auto-recharge", data=data)
        assert response.status_code == 200
        assert message in response.text
        settings = _credits(client, org)["auto_recharge"]
        assert (settings["enabled"], settings["threshold"], settings["max_per_month"]) == (False, 100, 1)

    def test_auto_recharge_saves_what_the_api_would(self, api: Api, client: TestClient) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        data = {"enabled": "on", "threshold": "250", "max_per_month": "4", "csrf_token": page_csrf(client)}
        assert "Auto-recharge settings updated." in client.post("/billing/credits/auto-recharge", data=data).text
        settings = _credits(client, org)["auto_recharge"]
        assert (settings["enabled"], settings["threshold"], settings["max_per_month"]) == (True, 250, 4)
        off = client.post("/billing/credits/auto-recharge", data={"threshold": "0", "max_per_month": "100",
                                                                  "csrf_token": page_csrf(client)})
        assert "Auto-recharge settings updated." in off.text
        settings = _credits(client, org)["auto_recharge"]
        assert (settings["enabled"], settings["threshold"], settings["max_per_month"]) == (False, 0, 100)

    @pytest.mark.parametrize("path", ["/billing/credits/top-up", "/billing/credits/auto-recharge"])
    def test_a_form_without_its_csrf_token_is_refused(self, path: str, api: Api, client: TestClient) -> None:
        org = make_org(api)
        login(client, "owner@acme.test")
        form = {"packs": "1", "enabled": "on", "threshold": "5", "max_per_month": "3"}
        for data in (form, {**form, "csrf_token": "forged"}):
            response = client.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403
            assert "This form has expired" in response.text
        credits = _credits(client, org)
        assert credits["topup"]["remaining"] == 0 and credits["auto_recharge"]["enabled"] is False

    @pytest.mark.parametrize("role", ["admin", "member"])
    def test_a_forged_post_from_anyone_but_the_owner_is_refused(
        self, role: str, api: Api, client: TestClient
    ) -> None:
        org = make_org(api)
        user = api.add_user(org["id"], role=role, password=PASSWORD)
        login(client, user["email"])
        csrf = page_csrf(client, "/billing")
        bought = client.post("/billing/credits/top-up", data={"packs": "abc", "csrf_token": csrf})
        assert "Credit purchases are Owner Only." in bought.text
        saved = client.post("/billing/credits/auto-recharge",
                            data={"enabled": "on", "threshold": "x", "max_per_month": "1", "csrf_token": csrf})
        assert "Only the organization owner can manage auto-recharge." in saved.text
        credits = _credits(client, org)
        assert credits["topup"]["remaining"] == 0 and credits["auto_recharge"]["enabled"] is False

    def test_the_top_up_preview_needs_the_csrf_header_and_a_valid_number(
        self, api: Api, client: TestClient
    ) -> None:
        make_org(api)
        login(client, "owner@acme.test")
        body = {"action": "top-up", "quantity": 3}
        refused = client.post("/billing/credits/top-up/preview", json=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
        headers = {"X-CSRF-Token": page_csrf(client)}
        ours = client.post("/billing/credits/top-up/preview", json=body, headers=headers).json()
        assert ours["allowed"] is True
        assert ours["display"] == {"quantity": "3", "credits": "3,000 credits", "charge_now": "$60.00", "message": ""}
        for quantity in (0, 101, "3", 1.5, None):
            bad = client.post("/billing/credits/top-up/preview", json={"action": "top-up", "quantity": quantity},
                              headers=headers)
            assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_request"), quantity
