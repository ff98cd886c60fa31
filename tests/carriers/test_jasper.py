"""The Jasper-family client against the simulator over real sockets: calls, retries, rate limit, breaker, secrets."""
import base64
import datetime as dt
import logging
import threading
import time
from itertools import pairwise

import pytest

from carriers import (
    CarrierAuthError,
    CarrierConfigError,
    CarrierNotFound,
    CarrierProtocolError,
    CarrierRequestRejected,
    CarrierUnavailable,
    CircuitOpenError,
    PageLimitExceeded,
)
from carriers.simulator import Faults
from devices.testing import fast_client, simulated_provider

SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def sim_provider(tenant, carrier_simulator):
    return simulated_provider(server=carrier_simulator, tenant=tenant)


@pytest.fixture
def client(sim_provider):
    with fast_client(sim_provider) as c:
        yield c


def a_sim(server, *, status="ACTIVATED"):
    return next(c for c, (s, _, _) in sorted(server.carrier.snapshot().items()) if s == status)


# -- limits, without sockets ---------------------------------------------------------------------------

















# -- the four calls --------------------------------------------------------------------------------------

def test_list_devices_page_parses_a_page(client, carrier_simulator):
    page = client.list_devices_page(modified_since=SINCE, page_number=1, page_size=50)
    assert page.page_number == 1 and page.last_page is False and len(page.devices) == 50
    first = page.devices[0]
    assert first.status in {"ACTIVATED", "DEACTIVATED", "INVENTORY"}
    assert carrier_simulator.carrier.snapshot()[first.iccid] == (first.status, first.rate_plan, first.communication_plan)
    query = carrier_simulator.carrier.request_log("/rws/api/v1/devices")[-1]["query"]
    assert query == {"modifiedSince": "2000-01-01T00:00:00+00:00", "pageSize": "50", "pageNumber": "1"}


def test_get_device_returns_details_with_dates(client, carrier_simulator):
    iccid = a_sim(carrier_simulator)
    details = client.get_device(iccid)
    assert details.iccid == iccid and details.status == "ACTIVATED"
    assert details.date_activated is not None and details.date_activated.tzinfo is not None
    assert details.date_updated > details.date_activated
    assert details.msisdn


def test_get_ctd_usage_returns_bytes(client, carrier_simulator):
    iccid = a_sim(carrier_simulator)
    usage = client.get_ctd_usage(iccid)
    expected = carrier_simulator.carrier.ctd_bytes(iccid)
    assert usage.iccid == iccid and isinstance(usage.ctd_bytes, int)
    assert abs(usage.ctd_bytes - expected) <= max(10, expected // 1000)  # usage grows between the two reads
    assert usage.measured_at.tzinfo is not None


def test_change_rate_plan_is_visible_in_later_reads_and_in_the_change_log(client, carrier_simulator):
    iccid = next(c for c, (s, plan, comm) in carrier_simulator.carrier.snapshot().items()
                 if comm == "CP-Fleet-Standard" and plan != "M2M-100MB")
    assert client.change_rate_plan(iccid, "M2M-100MB", effective_date=dt.date(2026, 12, 1)) == iccid
    assert client.get_device(iccid).rate_plan == "M2M-100MB"
    change = carrier_simulator.carrier.changes[-1]
    assert (change["iccid"], change["to"], change["effectiveDate"], change["source"]) == (
        iccid, "M2M-100MB", "2026-12-01", "api")
    put = carrier_simulator.carrier.request_log()[-2]
    assert put["method"] == "PUT" and put["path"] == f"/rws/api/v1/devices/{iccid}"


def test_change_to_a_plan_the_communication_plan_does_not_allow_is_rejected(client, carrier_simulator):
    iccid = next(c for c, (_, _, comm) in carrier_simulator.carrier.snapshot().items() if comm == "CP-Telemetry-Low")
    before = carrier_simulator.carrier.device(iccid)["ratePlan"]
    with pytest.raises(CarrierRequestRejected, match=rf"ICCID {iccid} to rate plan 'M2M-10GB'.*HTTP 400.*not available") as exc:
        client.change_rate_plan(iccid, "M2M-10GB")
    assert exc.value.field == "rate_plan"
    assert carrier_simulator.carrier.device(iccid)["ratePlan"] == before
    assert carrier_simulator.carrier.changes == []


def test_unknown_iccid_is_not_found(client):
    with pytest.raises(CarrierNotFound, match="does not know ICCID 8901269999999999999") as exc:
        client.get_device("8901269999999999999")
    assert exc.value.field == "iccid"


def test_change_rate_plan_is_retried_through_transient_failures(client, carrier_simulator):
    iccid = next(c for c, (_, plan, comm) in carrier_simulator.carrier.snapshot().items()
                 if comm == "CP-Video-High" and plan != "M2M-2GB")
    carrier_simulator.carrier.faults.script.extend(["500", "429", "timeout"])
    carrier_simulator.carrier.faults.hang_seconds = 1.0
    assert client.change_rate_plan(iccid, "M2M-2GB") == iccid
    assert client.stats.retries == 3 and client.stats.throttled == 1 and client.stats.timeouts == 1
    assert carrier_simulator.carrier.device(iccid)["ratePlan"] == "M2M-2GB"


# -- failures ------------------------------------------------------------------------------------------------

def test_wrong_api_key_gives_a_clear_error_without_the_key(tenant, carrier_simulator, caplog):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, api_key="sk-wrong-very-secret")
    caplog.set_level(logging.DEBUG)
    with fast_client(provider) as c, pytest.raises(CarrierAuthError) as exc:
        c.list_devices_page(modified_since=SINCE, page_number=1)
    message = exc.value.message
    assert "refused username 'demo-api-user'" in message and "HTTP 401" in message and "10000001" in message
    assert exc.value.field == "api_key"
    assert c.stats.calls == 1  # credentials are not retried
    secret_forms = ["sk-wrong-very-secret", base64.b64encode(b"demo-api-user:sk-wrong-very-secret").decode()]
    for text in (message, repr(c), caplog.text):
        for secret in secret_forms:
            assert secret not in text


def test_api_key_is_not_logged_on_retries_and_failures(sim_provider, carrier_simulator, caplog):
    caplog.set_level(logging.DEBUG)
    carrier_simulator.carrier.faults.outage = True
    with fast_client(sim_provider, threshold=1) as c, pytest.raises(CircuitOpenError) as exc:
        c.get_device(a_sim(carrier_simulator))
    assert "HTTP 500" in caplog.text  # retries are logged...
    key = sim_provider.api_key
    for text in (caplog.text, exc.value.message, str(exc.value)):
        assert key not in text  # ...without the key
        assert base64.b64encode(f"{sim_provider.username}:{key}".encode()).decode() not in text


def test_the_breaker_counts_calls_that_failed_for_good_not_their_retried_attempts(sim_provider, carrier_simulator):
    carrier_simulator.carrier.faults.outage = True
    carrier_simulator.carrier.clear_log()
    with fast_client(sim_provider, attempts=4, threshold=3) as c:
        for _ in range(2):  # 2 calls x 4 attempts = 8 failed attempts: still closed
            with pytest.raises(CarrierUnavailable, match="gave up after 4 attempts"):
                c.get_ctd_usage(a_sim(carrier_simulator))
        assert not c.breaker.is_open and len(carrier_simulator.carrier.request_log()) == 8
        with pytest.raises(CircuitOpenError, match="circuit open after 3 calls failed for good.*HTTP 500"):
            c.get_ctd_usage(a_sim(carrier_simulator))
        assert len(carrier_simulator.carrier.request_log()) == 12
        with pytest.raises(CircuitOpenError):
            c.get_device(a_sim(carrier_simulator))
        assert len(carrier_simulator.carrier.request_log()) == 12  # open: no further calls


def test_a_base_url_without_scheme_is_a_configuration_error_not_retried(provider_a):
    provider_a.api_base_url = "rws.example.com"
    with fast_client(provider_a) as c, pytest.raises(CarrierConfigError, match="api_base_url 'rws.example.com/rws/api/v1' is not a usable") as exc:
        c.get_device("8901260000000000001")
    assert exc.value.field == "api_base_url" and c.stats.retries == 0


def test_retries_exhausted_is_reported_as_unavailable(sim_provider, carrier_simulator):
    carrier_simulator.carrier.faults.script.extend(["500", "500", "500"])
    with fast_client(sim_provider, attempts=3) as c, pytest.raises(CarrierUnavailable, match="gave up after 3 attempts"):
        c.get_device(a_sim(carrier_simulator))


def test_timeout_is_retried_and_reported(sim_provider, carrier_simulator):
    carrier_simulator.carrier.faults.script.extend(["timeout"] * 2)
    carrier_simulator.carrier.faults.hang_seconds = 1.0
    started = time.monotonic()
    with fast_client(sim_provider, timeout=0.1) as c:
        assert c.get_device(a_sim(carrier_simulator)).iccid
        assert c.stats.timeouts == 2 and c.stats.retries == 2
    assert time.monotonic() - started < 0.9  # the client gave up waiting; it did not sit out the hang


def test_a_malformed_page_is_retried_then_a_protocol_error_naming_the_page(sim_provider, carrier_simulator):
    carrier_simulator.carrier.faults.malformed_page = 2
    with fast_client(sim_provider, attempts=3) as c:
        c.list_devices_page(modified_since=SINCE, page_number=1)
        with pytest.raises(CarrierProtocolError, match="page 2 of the device list is not valid JSON.*after 3 attempts"):
            c.list_devices_page(modified_since=SINCE, page_number=2)
        assert c.stats.retries == 2


def test_a_page_broken_once_is_retried_and_read(sim_provider, carrier_simulator):
    carrier_simulator.carrier.faults.fault_kinds = ("malformed",)
    carrier_simulator.carrier.faults.script.extend(["malformed"])
    with fast_client(sim_provider) as c:
        page = c.list_devices_page(modified_since=SINCE, page_number=1)
    assert len(page.devices) == 50 and c.stats.retries == 1


def test_page_guard_stops_a_carrier_that_never_says_last_page(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, max_pages=3, max_concurrency=2)
    carrier_simulator.carrier.faults.never_last_page = True
    with fast_client(provider) as c:
        pages = []
        with pytest.raises(PageLimitExceeded, match="within max_pages=3") as exc:
            for page in c.iter_device_pages(modified_since=SINCE):
                pages.append(page.page_number)
        assert exc.value.field == "max_pages"
    assert pages == [1, 2, 3]
    asked = {int(r["query"]["pageNumber"]) for r in carrier_simulator.carrier.request_log("/rws/api/v1/devices")}
    assert max(asked) == 3


def test_iter_device_pages_yields_every_page_in_order(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=420, seed=11)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=4)
    with fast_client(provider) as c:
        pages = list(c.iter_device_pages(modified_since=SINCE))
    assert [p.page_number for p in pages] == list(range(1, 10))
    assert pages[-1].last_page and len(pages[-1].devices) == 20
    iccids = [d.iccid for p in pages for d in p.devices]
    assert len(iccids) == len(set(iccids)) == 420


def test_client_keeps_to_the_carrier_rate_limit(tenant, carrier_simulator_factory, monkeypatch):
    server = carrier_simulator_factory(sims=100, faults=Faults(rate_limit=25))
    provider = simulated_provider(server=server, tenant=tenant, rate_limit_per_second=25, max_concurrency=4)
    iccids = sorted(server.carrier.snapshot())[:50]
    started = time.monotonic()
    with fast_client(provider) as c:
        slots, throttled_at = _record_slots(c.limiter, monkeypatch)
        results = list(c.iter_ctd_usages(iccids))
    elapsed = time.monotonic() - started
    assert len(results) == 50 and not any(isinstance(r, Exception) for _, r in results)
    # The limiter's own schedule (not wall-clock arrivals, which a loaded machine delays and bunches): each call
    # was given a start 1/25 s after the one before, or its own arrival if it came later than that.
    assert len(slots) == 50 + c.stats.throttled == 50 + len(throttled_at)
    slots.sort(key=lambda slot: slot[1])
    starts = [start for _, start in slots]
    assert all(b - a >= 1 / 25 - 1e-9 for a, b in pairwise(starts))  # never faster than the limit
    # Never slower than the limit asks for, until a throttled answer (if any) slows the account down on purpose.
    calm = [slot for slot in slots if slot[1] < min(throttled_at, default=float("inf"))]
    assert all(start <= max(asked, previous + 1 / 25) + 1e-9 for (_, previous), (asked, start) in pairwise(calm))
    assert elapsed >= 49 / 25
    # The carrier enforces 25 calls in each wall-clock second; it throttled only what the client saw throttled
    # (none, unless the machine delayed a call across a second boundary).
    assert server.carrier.counts.get("throttled", 0) == c.stats.throttled


def _record_slots(limiter, monkeypatch):
    """(asked at, start given) of every call the account's token bucket lets through, on the bucket's own clock,
    and when the limiter was told of a throttled answer."""
    bucket = limiter.bucket
    slots, throttled_at, asked = [], [], threading.local()
    acquire, clock, throttled = bucket.acquire, bucket._clock, limiter.throttled

    def clock_read():
        asked.at = clock()  # read once per acquire, under the bucket's lock
        return asked.at

    def recording_acquire():
        waited = acquire()
        slots.append((asked.at, asked.at + waited))
        return waited

    def recording_throttled(*args, **kwargs):
        throttled_at.append(clock())
        return throttled(*args, **kwargs)

    monkeypatch.setattr(bucket, "_clock", clock_read)
    monkeypatch.setattr(bucket, "acquire", recording_acquire)
    monkeypatch.setattr(limiter, "throttled", recording_throttled)
    return slots, throttled_at


def test_client_and_simulator_agree_on_429_when_the_client_is_too_fast(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=100, faults=Faults(rate_limit=5))
    provider = simulated_provider(server=server, tenant=tenant, rate_limit_per_second=1000, max_concurrency=4)
    # Retry-After: 1 is honoured (cap 1 s), so each throttled call waits for the carrier's budget to refill.
    with fast_client(provider, attempts=8, threshold=50, backoff_base=0.1, backoff_cap=1.0) as c:
        results = list(c.iter_ctd_usages(sorted(server.carrier.snapshot())[:12]))
    assert len(results) == 12
    assert c.stats.throttled > 0 and server.carrier.counts["throttled"] == c.stats.throttled
    assert server.carrier.counts["400"] == c.stats.throttled  # answered as Cisco does: 400 + 40000029
