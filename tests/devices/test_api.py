"""Devices API: filters by account, rate plan, status and ICCID prefix; paginated; one query per page."""
import pytest
from django.urls import reverse

from tests.factories import DeviceFactory, RatePlanFactory


@pytest.fixture
def fleet(provider_a, provider_b):
    small, large = RatePlanFactory(provider=provider_a, code="S"), RatePlanFactory(provider=provider_a, code="L")
    devices = []
    for i in range(30):
        devices.append(DeviceFactory(
            provider=provider_a, iccid=f"89012601{i % 3}{i:010d}", rate_plan=small if i % 2 else large,
            rate_plan_code="S" if i % 2 else "L", status="DEACTIVATED" if i % 5 == 0 else "ACTIVATED"))
    DeviceFactory(provider=provider_b, iccid="8901260100000000099")
    return {"small": small, "large": large, "devices": devices}


def ids(body):
    return {d["id"] for d in body["results"]}


def test_devices_filter_by_plan_status_and_iccid_prefix(api, fleet):
    url = reverse("api:device-list")
    devices = fleet["devices"]
    body = api.get(url, {"rate_plan": fleet["small"].pk}).json()
    assert ids(body) == {d.pk for d in devices if d.rate_plan_id == fleet["small"].pk}
    body = api.get(url, {"rate_plan_code": "L", "status": "DEACTIVATED"}).json()
    assert ids(body) == {d.pk for d in devices if d.rate_plan_code == "L" and d.status == "DEACTIVATED"}
    body = api.get(url, {"iccid_prefix": "890126011"}).json()
    expected = {d.pk for d in devices if d.iccid.startswith("890126011")}
    assert ids(body) == expected and len(expected) == 10
    # The other tenant's SIM shares the prefix but never shows.
    assert "8901260100000000099" not in {d["iccid"] for d in api.get(url, {"iccid_prefix": "8901260100"}).json()["results"]}


def test_devices_reject_bad_filters_per_field(api, fleet):
    response = api.get(reverse("api:device-list"), {"status": "SOLD", "iccid_prefix": "89x", "rate_plan": "-1"})
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"status", "iccid_prefix", "rate_plan"}


def test_devices_paginate_with_a_constant_number_of_queries(api, fleet, django_assert_max_num_queries):
    url = reverse("api:device-list")
    with django_assert_max_num_queries(3):  # token, count, page
        first = api.get(url, {"page_size": 12}).json()
    assert first["count"] == 30 and len(first["results"]) == 12
    rest = api.get(url, {"page_size": 12, "page": 3}).json()
    assert len(rest["results"]) == 6 and rest["next"] is None
    iccids = [d["iccid"] for d in first["results"]]
    assert iccids == sorted(iccids)


def test_device_list_queries_do_not_grow_with_the_sims(list_queries, provider_a):
    url = reverse("api:device-list")
    plan = RatePlanFactory(provider=provider_a)
    for _ in range(3):
        DeviceFactory(provider=provider_a, rate_plan=plan, rate_plan_code=plan.code)
    few = list_queries(url)
    for _ in range(27):
        DeviceFactory(provider=provider_a, rate_plan=plan, rate_plan_code=plan.code)
    many = list_queries(url)
    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0] <= 3, (few, many)  # token, count, page
