"""Pins: an operator keeps a SIM on its rate plan, with a reason; REST API and admin, tenant-isolated, clear errors."""
import pytest
from django.urls import reverse

from devices.models import DevicePin
from tests import factories


@pytest.fixture
def sim(provider_a):
    plan = factories.RatePlanFactory(provider=provider_a, code="M2M-5MB")
    return factories.DeviceFactory(provider=provider_a, iccid="8901260000000000101", rate_plan=plan,
                                   rate_plan_code=plan.code)


def pin(api, provider, iccid, reason="customer contract until June"):
    return api.post(reverse("api:pin-list"), {"provider": provider.pk, "iccid": iccid, "reason": reason},
                    content_type="application/json")


def test_pinning_a_sim_records_who_why_and_the_plan_it_keeps(api, sim, alice, provider_a):
    response = pin(api, provider_a, sim.iccid)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["iccid"], body["rate_plan"], body["reason"], body["pinned_by"]) == (
        sim.iccid, "M2M-5MB", "customer contract until June", "alice")
    stored = DevicePin.objects.get(device=sim)
    assert stored.pinned_by == alice and stored.reason == "customer contract until June"
    listed = api.get(reverse("api:pin-list"), {"provider": provider_a.pk}).json()["results"]
    assert [p["iccid"] for p in listed] == [sim.iccid]
    assert api.delete(reverse("api:pin-detail", kwargs={"pk": stored.pk})).status_code == 204
    assert not DevicePin.objects.exists()


def test_bad_pins_are_refused_naming_the_sim_and_the_field(api, sim, provider_a, provider_b):
    no_plan = factories.DeviceFactory(provider=provider_a, iccid="8901260000000000102", rate_plan=None,
                                      rate_plan_code="GONE-PLAN")
    response = pin(api, provider_a, no_plan.iccid)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "rate_plan" in error["fields"] and no_plan.iccid in error["message"] and "GONE-PLAN" in error["message"]
    response = pin(api, provider_a, sim.iccid, reason="   ")
    assert response.status_code == 400 and "reason" in response.content.decode()
    foreign = factories.DeviceFactory(provider=provider_b, iccid="8901260000000000103")
    response = pin(api, provider_b, foreign.iccid)  # another tenant's SIM: not found, nothing pinned
    assert response.status_code == 404 and list(response.json()["error"]["fields"]) == ["iccid"]
    assert pin(api, provider_a, sim.iccid).status_code == 201
    again = pin(api, provider_a, sim.iccid, reason="other")
    assert again.status_code == 409 and sim.iccid in again.json()["error"]["message"]
    assert list(DevicePin.objects.values_list("device__iccid", "reason")) == [(sim.iccid, "customer contract until June")]


def test_the_admin_pins_through_the_same_rules(client, sim, provider_a):
    admin_user = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    url = reverse("admin:devices_devicepin_add")
    no_plan = factories.DeviceFactory(provider=provider_a, iccid="8901260000000000104", rate_plan=None)
    response = client.post(url, {"device": no_plan.pk, "reason": "keep"})
    assert response.status_code == 200 and "no current rate plan" in response.content.decode()
    response = client.post(url, {"device": sim.pk, "reason": "field trial"})
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = DevicePin.objects.get(device=sim)
    assert stored.pinned_by == admin_user and stored.reason == "field trial"
    assert client.get(reverse("admin:devices_devicepin_changelist")).status_code == 200
