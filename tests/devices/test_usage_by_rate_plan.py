"""Usage sync through Get Usage by Rate Plan: one paged call per 50 SIMs of a non-shared plan; ctdUsages per SIM
only for SIMs on shared plans, missing from the pages, or whose plan changed this cycle."""
import time

from carriers.simulator.fleet import CATALOGUE
from devices.models import Device, DeviceUsage
from devices.services import device_sync, usage_sync
from devices.testing import billed, fast_client, simulated_provider
from rateplans.models import RatePlan

POOLED = {p.code for p in CATALOGUE if p.pooled}


def calls(server):
    log = server.carrier.request_log("/rws/api/v1/")
    pages = [r for r in log if r["path"].endswith("/usages")]
    per_sim = [r["path"].split("/")[-2] for r in log if r["path"].endswith("/ctdUsages")]
    return pages, per_sim


def test_sims_on_non_shared_plans_come_from_the_paged_call_with_the_same_bytes(tenant, carrier_simulator_factory):
    frozen = time.time()
    server = carrier_simulator_factory(sims=600, seed=11, clock=lambda: frozen)
    provider = simulated_provider(server=server, tenant=tenant)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
    server.carrier.clear_log()
    with fast_client(provider) as client:
        run = usage_sync(provider=provider, client=client)
    assert run.status == "succeeded", run.error
    pages, per_sim = calls(server)
    plans = dict(Device.objects.filter(provider=provider).values_list("iccid", "rate_plan_code"))
    wanted = billed(provider)
    on_shared = {i for i in wanted if plans[i] in POOLED}
    unavailable = {i for i in wanted if server.carrier._usage_missing(i)}
    # Per SIM: exactly the SIMs on shared plans and those the paged answers did not list.
    assert set(per_sim) == on_shared | unavailable and len(per_sim) == len(set(per_sim)) + run.retries
    # Paged: every non-shared plan in use is asked; the shared ones, which the call does not serve, never are.
    used = {plans[i] for i in wanted}
    asked = {r["query"]["ratePlanName"] for r in pages}
    assert asked == used - POOLED and used & POOLED
    expected_pages = sum(max(1, -(-sum(1 for i in wanted - unavailable if plans[i] == p) // 50))
                         for p in used - POOLED)
    assert len(pages) == expected_pages
    assert run.calls == len(pages) + len(per_sim) < 0.6 * len(wanted)  # was one call per SIM
    # The bytes are the carrier's cycle to date, whichever call brought them.
    stored = dict(DeviceUsage.objects.filter(device__provider=provider).values_list("device__iccid", "ctd_bytes"))
    assert set(stored) == wanted - unavailable
    assert stored == {i: server.carrier.ctd_bytes(i) for i in stored}
    assert run.rejected == len(unavailable) and {r["iccid"] for r in run.rejects} == unavailable


def test_a_plan_the_catalogue_does_not_know_as_shared_is_refused_once_and_its_sims_asked_one_by_one(
        tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, seed=11)
    provider = simulated_provider(server=server, tenant=tenant)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
    plans = dict(Device.objects.filter(provider=provider).values_list("iccid", "rate_plan_code"))
    wanted = billed(provider)
    shared = max(POOLED & {plans[i] for i in wanted}, key=lambda p: sum(1 for i in wanted if plans[i] == p))
    RatePlan.objects.filter(provider=provider, code=shared).update(pooled=False)  # the catalogue is wrong about it
    server.carrier.clear_log()
    with fast_client(provider) as client:
        run = usage_sync(provider=provider, client=client)
    assert run.status == "succeeded", run.error
    pages, per_sim = calls(server)
    assert [r["query"]["ratePlanName"] for r in pages].count(shared) == 1  # refused: the carrier shares it
    unavailable = {i for i in wanted if server.carrier._usage_missing(i)}
    assert {i for i in wanted if plans[i] == shared} <= set(per_sim)
    stored = dict(DeviceUsage.objects.filter(device__provider=provider).values_list("device__iccid", "ctd_bytes"))
    assert set(stored) == wanted - unavailable


def test_a_sim_whose_plan_changed_this_cycle_is_asked_on_its_own(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, seed=12)
    provider = simulated_provider(server=server, tenant=tenant)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
        assert not Device.objects.filter(provider=provider, plan_changed_at__isnull=False).exists()
        moved = set(server.carrier.churn(20))
        assert device_sync(provider=provider, client=client).status == "succeeded"
        changed = set(Device.objects.filter(provider=provider, plan_changed_at__isnull=False)
                      .values_list("iccid", flat=True))
        assert changed and changed <= moved  # a churned SIM may have been deactivated rather than moved
        server.carrier.clear_log()
        assert usage_sync(provider=provider, client=client).status == "succeeded"
    _, per_sim = calls(server)
    assert changed & billed(provider) <= set(per_sim)
