"""One SIM of a session (its usage, plans, costs and pin), and pinning or unpinning it from its row in the SIM list:
tenant members with the pin permissions only, checked on the server; everyone else reads."""
import pytest
from django.urls import reverse

from devices.models import DevicePin
from optimizer.models import DeviceAssignment


@pytest.fixture
def session(completed_session, provider_a):
    return completed_session(provider=provider_a, groups=2, sims_per_group=6, seed=5)


@pytest.fixture
def moved(session):
    return DeviceAssignment.objects.filter(run=session.run, changed=True).select_related(
        "current_plan", "recommended_plan", "comm_group").order_by("iccid").first()


def test_the_sim_page_shows_usage_plans_costs_and_pin(session, moved, alice_client):
    url = reverse("dashboard:session-sim", args=[session.guid, moved.iccid])
    body = alice_client.get(url).content.decode()
    assert moved.iccid in body and moved.comm_group.name in body
    assert f'data-field="current_plan">{moved.current_plan.code}<' in body
    assert f'data-field="recommended_plan">{moved.recommended_plan.code}<' in body
    assert f"{moved.current_cost:,.2f}" in body and f"{moved.recommended_cost:,.2f}" in body
    for plan in moved.comm_group.rate_plans.all():
        assert f"<td>{plan.code}</td>" in body
    assert "Not pinned" in body and "Pin to" in body
    # The list links each row to its page.
    listing = alice_client.get(reverse("dashboard:session-sims", args=[session.guid])).content.decode()
    assert reverse("dashboard:session-sim", args=[session.guid, moved.iccid]) in listing
    assert alice_client.get(reverse("dashboard:session-sim", args=[session.guid, "8999999999999999999"])).status_code == 404


def test_pin_and_unpin_from_the_row_keep_the_filtered_list(session, moved, alice_client, alice):
    back = reverse("dashboard:session-sims", args=[session.guid]) + "?changed=true&sort=-saving"
    listing = alice_client.get(back).content.decode()
    pin_url = reverse("dashboard:session-sim-pin", args=[session.guid, moved.iccid])
    assert f'action="{pin_url}"' in listing

    refused = alice_client.post(pin_url, {"reason": "  ", "next": back}, follow=True)
    assert refused.redirect_chain[-1][0] == back and "reason: say why" in refused.content.decode()
    assert not DevicePin.objects.exists()

    done = alice_client.post(pin_url, {"reason": "field trial until June", "next": back}, follow=True)
    assert done.redirect_chain[-1][0] == back
    pin = DevicePin.objects.get(device=moved.device)
    assert (pin.reason, pin.pinned_by) == ("field trial until June", alice)
    assert f"SIM {moved.iccid} pinned to {moved.current_plan.code}" in done.content.decode()
    page = alice_client.get(reverse("dashboard:session-sim", args=[session.guid, moved.iccid])).content.decode()
    assert "field trial until June" in page and "by alice" in page

    # Somewhere else is not a place to be sent back to.
    unpin_url = reverse("dashboard:session-sim-unpin", args=[session.guid, moved.iccid])
    gone = alice_client.post(unpin_url, {"next": "https://evil.example/"})
    assert gone.status_code == 302 and gone["Location"] == reverse("dashboard:session-sims", args=[session.guid])
    assert not DevicePin.objects.exists()


def test_a_read_only_user_sees_pins_but_cannot_pin_or_unpin(session, moved, client, reader, api):
    DevicePin.objects.create(device=moved.device, reason="contract")
    other = DeviceAssignment.objects.filter(run=session.run).exclude(pk=moved.pk).first()
    client.force_login(reader)
    listing = client.get(reverse("dashboard:session-sims", args=[session.guid])).content.decode()
    assert "pinned" in listing and 'name="reason"' not in listing and ">Unpin<" not in listing
    page = client.get(reverse("dashboard:session-sim", args=[session.guid, other.iccid])).content.decode()
    assert 'id="pin-read-only"' in page and "Pin to" not in page

    for name, iccid in (("dashboard:session-sim-pin", other.iccid), ("dashboard:session-sim-unpin", moved.iccid)):
        response = client.post(reverse(name, args=[session.guid, iccid]), {"reason": "mine"})
        assert response.status_code == 403 and "devices.add_devicepin" in response.content.decode()
    assert list(DevicePin.objects.values_list("device_id", flat=True)) == [moved.device_id]

    # The API refuses the same user the same way.
    from tests.factories_results import token_for
    api.defaults["HTTP_AUTHORIZATION"] = f"Token {token_for(reader)}"
    response = api.post(reverse("api:pin-list"), {"provider": session.provider_id, "iccid": other.iccid,
                                                  "reason": "mine"}, content_type="application/json")
    assert response.status_code == 403 and "devices.add_devicepin" in response.json()["error"]["message"]
    pin = DevicePin.objects.get()
    assert api.delete(reverse("api:pin-detail", kwargs={"pk": pin.pk})).status_code == 403
    assert DevicePin.objects.count() == 1


def test_another_tenants_sim_page_and_pin_are_404(session, moved, client, bob, tenant_b):
    client.force_login(bob)
    assert client.get(reverse("dashboard:session-sim", args=[session.guid, moved.iccid])).status_code == 404
    assert client.post(reverse("dashboard:session-sim-pin", args=[session.guid, moved.iccid]),
                       {"reason": "x"}).status_code == 404
    assert not DevicePin.objects.exists()
