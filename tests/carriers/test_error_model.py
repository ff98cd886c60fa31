"""The client follows Control Center's published error model (developer.cisco.com/docs/control-center/):
throttling (errorCode 40000029, whatever the HTTP status) is waited out and never blamed on a SIM; SIM codes
skip one SIM; request- and account-level codes stop the sync or the push at once with one error naming the code."""
import datetime as dt

import pytest
from django.test import TestCase

from carriers import CarrierAccountError, CarrierAuthError, CarrierNotFound, CarrierRequestRejected
from carriers.simulator import Faults
from devices.models import DeviceUsage
from devices.services import device_sync, usage_sync
from devices.testing import billed, fast_client, simulated_provider

SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def synced(provider, **client_options):
    with fast_client(provider, **client_options) as client, TestCase.captureOnCommitCallbacks(execute=True):
        run = device_sync(provider=provider, client=client)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def usage(provider, **client_options):
    with fast_client(provider, **client_options) as client, TestCase.captureOnCommitCallbacks(execute=True):
        run = usage_sync(provider=provider, client=client)
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("throttle_status", [400, 429])
def test_throttled_usage_calls_are_waited_out_and_no_sim_is_skipped(tenant, carrier_simulator_factory, throttle_status):
    server = carrier_simulator_factory(sims=120)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    synced(provider)
    active = len(billed(provider))
    server.carrier.faults.throttle_status = throttle_status
    server.carrier.faults.script.extend(["ok", "429", "ok", "429", "429", "ok"] * 5)
    server.carrier.clear_log()
    run = usage(provider)
    assert run.status == "succeeded", run.error
    assert run.rejected == 0 and run.rejects == []
    assert DeviceUsage.objects.filter(device__provider=provider).count() == active
    assert run.throttled == 15 == server.carrier.counts["throttled"]
    assert run.calls == len(server.carrier.request_log("/rws/api/v1/")) and run.calls_per_second > 0


def test_throttling_is_read_from_the_error_code_whatever_the_status(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    iccid = sorted(carrier_simulator.carrier.snapshot())[0]
    carrier_simulator.carrier.faults.script.extend(["code:40000029", "code:40000029"])
    with fast_client(provider) as c:
        assert c.get_ctd_usage(iccid).iccid == iccid
        assert (c.stats.throttled, c.stats.failures, c.breaker.recent_failures) == (2, 0, 0)
        assert c.limiter.current_rate < c.limiter.rate  # the account slowed down


@pytest.mark.parametrize(("code", "meaning"), [
    ("10000003", "a required parameter is missing"),
    ("10000023", "the request body is not valid JSON"),
    ("10000024", "invalid API version"),
    ("10000028", "the request has parameters the function does not know"),
    ("10000030", "the API user's role has no access"),
])
def test_a_request_level_code_stops_the_usage_sync_at_once_naming_the_code(tenant, carrier_simulator, code, meaning):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, max_concurrency=1)
    synced(provider)
    before = len(carrier_simulator.carrier.request_log())
    # This role may not page usage by rate plan (refused once, then every SIM is asked on its own), so the
    # scripted refusal lands on a SIM's ctdUsages call.
    carrier_simulator.carrier.faults.no_access = ("usages",)
    carrier_simulator.carrier.faults.script.extend(["ok", "ok", f"code:{code}"])
    run = usage(provider)
    assert run.status == "failed"
    assert f"errorCode {code}: {meaning}" in run.error and "DeviceUsage unchanged" in run.error
    # Stopped at the first refusal (one call already queued behind it may still go out).
    assert len(carrier_simulator.carrier.request_log()) - before <= 5
    assert run.rejected == 0 and not DeviceUsage.objects.filter(device__provider=provider).exists()


def test_a_role_without_usage_by_rate_plan_gets_every_sims_usage_one_by_one(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, max_concurrency=1)
    synced(provider)
    carrier_simulator.carrier.faults.no_access = ("usages",)
    carrier_simulator.carrier.clear_log()
    run = usage(provider)
    assert run.status == "succeeded", run.error
    paged = carrier_simulator.carrier.request_log("/rws/api/v1/usages")
    per_sim = [r for r in carrier_simulator.carrier.request_log("/rws/api/v1/devices/") if r["path"].endswith("/ctdUsages")]
    assert len(paged) == 1 and paged[0]["status"] == 403  # asked once, not once per plan
    assert {r["path"].split("/")[-2] for r in per_sim} == billed(provider)
    assert DeviceUsage.objects.filter(device__provider=provider).count() == run.devices_seen - run.rejected


def test_bad_credentials_by_code_stop_the_device_sync(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, max_concurrency=1)  # calls in order
    carrier_simulator.carrier.faults.script.extend(["ok", "code:10000001"])
    with fast_client(provider) as client:
        run = device_sync(provider=provider, client=client)
        with pytest.raises(CarrierAuthError) as exc:
            carrier_simulator.carrier.faults.script.append("code:10000001")
            client.get_device(sorted(carrier_simulator.carrier.snapshot())[0])
    assert run.status == "failed" and "refused username" in run.error and "10000001" in run.error
    assert exc.value.carrier_code == "10000001" and isinstance(exc.value, CarrierAccountError)


def test_sim_codes_are_about_that_sim_only(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    iccid = sorted(carrier_simulator.carrier.snapshot())[0]
    carrier_simulator.carrier.faults.script.extend(["code:20000001", "code:10000013", "code:10000014"])
    with fast_client(provider) as c:
        with pytest.raises(CarrierNotFound, match="errorCode 20000001"):
            c.get_ctd_usage(iccid)
        for code in ("10000013", "10000014"):
            with pytest.raises(CarrierRequestRejected, match=f"errorCode {code}") as exc:
                c.change_rate_plan(iccid, "M2M-5MB")
            assert exc.value.per_device
        assert c.stats.retries == 0 and c.breaker.recent_failures == 0


def test_one_call_in_flight_by_default_and_the_carrier_never_sees_two(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, faults=Faults(max_in_flight=1))
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=None)
    provider.refresh_from_db()
    assert provider.max_concurrency == 1
    run = synced(provider)
    assert run.throttled == 0 and server.carrier.max_seen_in_flight == 1
    run = usage(provider)
    assert run.status == "succeeded" and run.throttled == 0 and server.carrier.max_seen_in_flight == 1


def test_more_in_flight_than_the_carrier_allows_is_throttled_and_still_completes(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=600, faults=Faults(max_in_flight=1, latency_ms=5))
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=4)
    devices_run = synced(provider)  # 4 pages asked for at once: refused, and the account slows to 1 in flight
    assert devices_run.throttled > 0 and devices_run.throttled == server.carrier.counts["throttled"]
    assert devices_run.devices_seen == 600
    run = usage(provider)
    active = len(billed(provider))
    assert run.status == "succeeded" and run.rejected == 0
    assert DeviceUsage.objects.filter(device__provider=provider).count() == active
