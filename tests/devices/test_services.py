"""devices.services over real sockets. Device sync: staging, one-transaction merge, faults, dedup, incremental,
rejects, emails, signal. Usage sync: ctdUsages per SIM into DeviceUsage, all or nothing, only SIMs worth asking about."""
import datetime as dt
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.test import TestCase, override_settings
from django.utils import timezone

from carriers import BYTES_PER_MB, CarrierClient, DeviceDetails, DevicePage, DeviceRecord
from carriers.simulator import Faults
from devices import selectors
from devices.models import Device, DeviceStaging, DeviceUsage, SyncRun
from devices.services import (
    FULL_SYNC_SINCE,
    NEW_COMM_PLANS_SUBJECT,
    STAGING_BATCH_ROWS,
    SUMMARY_SUBJECT,
    WATERMARK_OVERLAP,
    device_sync,
    usage_sync,
)
from devices.signals import device_sync_completed
from devices.testing import fast_client, simulated_provider
from devices.usage import bytes_to_mb, projected_mb
from rateplans.models import CommunicationPlan, RatePlan
from rateplans.services import billing_period_current
from tests import factories

OPS = ["ops@carrieropt.example"]


def sync(provider, *, timeout=0.25, attempts=5, **kwargs) -> SyncRun:
    # on_commit callbacks (the emails) run as a real commit would run them.
    with fast_client(provider, timeout=timeout, attempts=attempts) as client, \
            TestCase.captureOnCommitCallbacks(execute=True):
        run = device_sync(provider=provider, client=client, **kwargs)
    run.refresh_from_db()
    return run


def device_state(provider) -> dict[str, tuple]:
    return {iccid: (status, plan, comm) for iccid, status, plan, comm in Device.objects.filter(provider=provider)
            .values_list("iccid", "status", "rate_plan_code", "communication_plan_name")}


@override_settings(OPS_EMAILS=OPS)
def test_full_sync_creates_every_sim_and_records_the_run(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, seed=7)
    provider = simulated_provider(server=server, tenant=tenant)
    run = sync(provider)
    assert (run.status, run.kind, run.error) == ("succeeded", "full", "")
    assert run.modified_since == FULL_SYNC_SINCE
    assert (run.pages, run.devices_seen, run.inserted, run.updated, run.missing, run.rejected, run.duplicates) == (
        6, 300, 300, 0, 0, 0, 0)
    assert run.calls >= 6 and run.retries == 0 and run.merge_seconds is not None and run.duration_seconds > 0
    assert run.watermark == run.started_at - WATERMARK_OVERLAP
    assert device_state(provider) == server.carrier.snapshot()
    plans = dict(RatePlan.objects.filter(provider=provider).values_list("code", "pk"))
    comms = dict(CommunicationPlan.objects.filter(provider=provider).values_list("name", "pk"))
    for device in Device.objects.filter(provider=provider):
        assert device.rate_plan_id == plans[device.rate_plan_code]
        assert device.communication_plan_id == comms[device.communication_plan_name]
        assert device.missing_since is None and device.synced_at is not None
    provider.refresh_from_db()
    assert provider.last_device_sync_at == run.started_at
    assert not DeviceStaging.objects.exclude(sync_run=run).exists()
    [summary] = mail.outbox
    assert summary.subject == f"{SUMMARY_SUBJECT}: {provider.name}"
    assert summary.to == ["fleet-ops@example.com", *OPS]
    assert "SIMs seen: 300" in summary.body and "Added: 300" in summary.body and "Rejected: 0" in summary.body
    assert "Last usage sync: never" in summary.body


@pytest.mark.slow
def test_ten_thousand_sims_with_ten_percent_faults_each_synced_exactly_once(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=10_000, seed=21, faults=Faults(error_rate=0.1, hang_seconds=0.5))
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=4)
    with fast_client(provider, timeout=0.2, attempts=6) as client:
        run = device_sync(provider=provider, client=client)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    injected = sum(server.carrier.counts[k] for k in ("500", "throttled", "timeout"))
    # On a busy machine an answer that was not a fault can still come later than 0.2 s: also retried.
    late = client.stats.timeouts - server.carrier.counts["timeout"]
    listing = [r for r in server.carrier.request_log("/rws/api/v1/devices") if r["path"] == "/rws/api/v1/devices"]
    on_needed_pages = [r for r in listing if r["status"] != 200 and int(r["query"]["pageNumber"]) <= run.pages]
    assert len(on_needed_pages) >= 10  # ~10 % of ~225 calls: 500s, throttling (400 + 40000029) and hangs
    assert {r["status"] for r in on_needed_pages} == {500, 400, 504}
    # Each fault on a page the sync needed cost exactly one retry, all counted in the run; a
    # speculative call past the last page may still have been retrying when the run was recorded.
    assert len(on_needed_pages) <= run.retries <= client.stats.retries == injected + late
    assert (run.devices_seen, run.inserted, run.duplicates, run.rejected) == (10_000, 10_000, 0, 0)
    assert Device.objects.filter(provider=provider).count() == 10_000
    assert device_state(provider) == server.carrier.snapshot()
    # The customers of the first DEVICE_SYNC_CUSTOMER_READS SIMs were read through the same faults.
    read = Device.objects.filter(provider=provider, customer_name__isnull=False)
    assert read.count() == 5_000 and "the rest are read by the next syncs" in run.error
    customers = server.carrier.customers()
    assert all((customers[iccid] or "") == name for iccid, name in read.values_list("iccid", "customer_name"))


def test_an_outage_fails_the_sync_after_the_retries_and_leaves_devices_unchanged(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=400, seed=8)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    assert sync(provider).status == "succeeded"
    server.carrier.churn(40)  # there would be something to merge
    before = selectors.devices_checksum(provider=provider)
    server.carrier.clear_log()
    server.carrier.faults.script.extend(["ok", "ok"])  # pages 1 and 2 arrive, then the carrier goes down
    server.carrier.faults.outage = True
    run = sync(provider, full=True, attempts=10)
    assert run.status == "failed"
    assert "gave up after 10 attempts" in run.error and "HTTP 500" in run.error
    assert run.error.endswith("Device table unchanged.")
    assert len(server.carrier.request_log()) == 2 + 10  # nothing after the page that failed for good
    assert run.calls == 12 and run.retries == 9
    assert selectors.devices_checksum(provider=provider) == before
    assert (run.inserted, run.updated, run.missing) == (0, 0, 0)
    assert selectors.device_sync_watermark(provider=provider) != run.watermark


def test_malformed_page_fails_the_sync_and_merges_nothing(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=2_500, faults=Faults(malformed_page=45))
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    run = sync(provider)
    assert run.status == "failed" and run.pages == 44
    assert "page 45 of the device list is not valid JSON" in run.error
    # Staging is written in batches of STAGING_BATCH_ROWS; the first 2,000 SIMs were staged
    # (kept for inspection until the next sync)...
    assert DeviceStaging.objects.filter(sync_run=run).count() == STAGING_BATCH_ROWS == 2_000
    assert Device.objects.filter(provider=provider).count() == 0  # ...and not merged
    provider.refresh_from_db()
    assert provider.last_device_sync_at is None


def test_sim_on_two_pages_is_merged_once_and_holds_the_watermark(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, faults=Faults(duplicate_across_pages=True))
    provider = simulated_provider(server=server, tenant=tenant)
    factories.DeviceFactory(provider=provider, iccid="8901269999000000001")  # gone from the carrier
    run = sync(provider)
    assert run.status == "succeeded"
    assert run.duplicates == run.pages - 1 > 0
    assert (run.devices_seen, run.inserted) == (300, 300)
    assert device_state(provider) == {**server.carrier.snapshot(), "8901269999000000001": ("ACTIVATED", "", "")}
    # The list moved while it was read, so a SIM may have been skipped: nothing is marked missing
    # and the next sync reads the same window again.
    assert run.missing == 0 and run.watermark == FULL_SYNC_SINCE
    assert "appeared on two pages" in run.error
    assert "Duplicates dropped: 6" in mail.outbox[0].body


def test_sims_changing_between_pages_keep_their_newest_state_and_none_is_lost(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, faults=Faults(churn=2))
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    run = sync(provider)
    assert run.status == "succeeded" and run.duplicates > 0
    # The carrier changed 2 SIMs after each page it served, the last page included (and a page asked for
    # ahead past the last, when it was sent): those changes came after the sync's final read. Every other
    # SIM read is as the carrier has it now.
    late = {c["iccid"] for c in server.carrier.changes[2 * (run.pages - 1):]}
    now = server.carrier.snapshot()
    synced = device_state(provider)
    assert {k: v for k, v in synced.items() if k not in late} == {k: now[k] for k in synced if k not in late}
    # A changed SIM jumps to the end of an offset-paged list, so the SIMs behind it shift one place
    # back and one may fall onto a page already read. Hence: watermark held, nothing marked missing...
    assert run.watermark == FULL_SYNC_SINCE and run.missing == 0
    # ...and the next sync reads the same window again, so no SIM is lost.
    server.carrier.faults.churn = 0
    again = sync(provider)
    assert (again.kind, again.modified_since, again.duplicates) == ("incremental", FULL_SYNC_SINCE, 0)
    assert device_state(provider) == server.carrier.snapshot()
    assert again.watermark == again.started_at - WATERMARK_OVERLAP


def test_wrong_api_key_fails_clearly_and_merges_nothing(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, api_key="sk-not-the-key-1234")
    run = sync(provider)
    # Up to max_concurrency pages are asked for at once, and one more waits for a free thread; none is retried.
    assert run.status == "failed" and 1 <= run.calls <= provider.max_concurrency + 1 and run.retries == 0
    assert "refused username 'demo-api-user' and its API key (HTTP 401" in run.error
    assert run.error.endswith("check the account's username and api_key. Device table unchanged.")
    assert "sk-not-the-key-1234" not in run.error
    assert Device.objects.filter(provider=provider).count() == 0


def test_incremental_sync_sends_the_watermark_and_touches_only_changed_sims(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=300, seed=7)
    provider = simulated_provider(server=server, tenant=tenant)
    first = sync(provider)
    # Precondition: no SIM changed inside the overlap window, so the second listing has only the churned ones.
    assert max(server.carrier.date_updated) < (first.watermark.timestamp() * 1000)
    before = {d.iccid: d for d in Device.objects.filter(provider=provider)}
    server.carrier.clear_log()
    changed = set(server.carrier.churn(7))
    second = sync(provider)
    assert (second.kind, second.status) == ("incremental", "succeeded")
    assert second.modified_since == first.watermark
    [listing] = [r for r in server.carrier.request_log("/rws/api/v1/devices") if r["query"].get("pageNumber") == "1"]
    assert listing["query"]["modifiedSince"] == first.watermark.astimezone(dt.UTC).isoformat(timespec="seconds")
    assert (second.devices_seen, second.updated, second.inserted, second.missing) == (7, 7, 0, 0)
    after = {d.iccid: d for d in Device.objects.filter(provider=provider)}
    touched = {iccid for iccid, d in after.items() if d.synced_at != before[iccid].synced_at}
    assert touched == changed
    snapshot = server.carrier.snapshot()
    assert all((after[i].status, after[i].rate_plan_code) == snapshot[i][:2] for i in changed)
    untouched_fields = ["status", "rate_plan_id", "communication_plan_id", "synced_at", "missing_since"]
    for iccid in set(after) - changed:
        assert [getattr(after[iccid], f) for f in untouched_fields] == [getattr(before[iccid], f) for f in untouched_fields]


def test_sync_kind_is_full_first_and_when_the_last_full_one_is_old(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    assert sync(provider, full=False).kind == "full"  # no watermark yet: incremental is impossible
    assert sync(provider).kind == "incremental"
    SyncRun.objects.filter(provider=provider, kind="full").update(started_at=timezone.now() - dt.timedelta(days=8))
    assert sync(provider).kind == "full"
    assert sync(provider, full=True).kind == "full"


def test_full_sync_marks_sims_missing_and_clears_them_when_they_return(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    gone = factories.DeviceFactory(provider=provider, iccid="8901269999000000002")
    back_iccid = sorted(carrier_simulator.carrier.iccids)[0]
    back = factories.DeviceFactory(provider=provider, iccid=back_iccid, missing_since=timezone.now())
    run = sync(provider)
    assert (run.missing, run.inserted, run.updated) == (1, 199, 1)
    gone.refresh_from_db()
    back.refresh_from_db()
    assert gone.missing_since is not None and back.missing_since is None
    assert sync(provider).missing == 0  # incremental syncs never mark missing


def test_unknown_rate_plan_is_rejected_with_its_reason_and_the_sim_not_marked_missing(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    RatePlan.objects.filter(provider=provider, code="M2M-10GB").delete()
    on_it = sorted(i for i, (_, plan, _) in carrier_simulator.carrier.snapshot().items() if plan == "M2M-10GB")
    assert on_it
    known = factories.DeviceFactory(provider=provider, iccid=on_it[0], rate_plan_code="M2M-10GB")
    run = sync(provider)
    assert run.status == "succeeded" and run.rejected == len(on_it)
    assert {r["iccid"] for r in run.rejects} == set(on_it)
    assert run.rejects[0]["reason"] == "ratePlan 'M2M-10GB' is not in this account's catalogue; add it, then sync again"
    assert run.inserted == 200 - len(on_it) and run.missing == 0
    known.refresh_from_db()
    assert known.missing_since is None and known.synced_at is None  # kept as it was, not merged
    assert not Device.objects.filter(provider=provider, iccid__in=on_it[1:]).exists()


def test_no_sync_while_a_rate_plan_push_of_the_account_uses_the_carriers_rate_limit(tenant, carrier_simulator):
    from pushes.models import RatePlanPush
    from rateplans.services import billing_period_current

    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    period = billing_period_current(provider=provider)
    RatePlanPush.objects.create(provider=provider, status="running", decision="go", period_ends_at=period.ends_at(),
                                minutes_left=100, minutes_needed=1, rate_per_minute=60)
    carrier_simulator.carrier.clear_log()
    run = sync(provider)
    assert run.status == "failed" and "rate plan update" in run.error
    assert carrier_simulator.carrier.request_log() == [] and not Device.objects.filter(provider=provider).exists()


def test_rejected_sims_are_read_again_by_the_next_sync_once_the_catalogue_is_fixed(tenant, carrier_simulator):
    from devices.demo import demo_catalogue_upsert

    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    RatePlan.objects.filter(provider=provider, code="M2M-10GB").delete()
    first = sync(provider)
    assert first.rejected > 0
    demo_catalogue_upsert(provider=provider)  # the operator adds the missing plan
    second = sync(provider)
    assert second.kind == "incremental" and second.status == "succeeded"
    assert Device.objects.filter(provider=provider).count() == 200  # the rejected SIMs arrived


@override_settings(OPS_EMAILS=OPS)
def test_new_communication_plans_are_created_and_announced(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    CommunicationPlan.objects.filter(provider=provider, name="CP-Video-High").delete()
    run = sync(provider)
    assert run.new_communication_plans == ["CP-Video-High"]
    created = CommunicationPlan.objects.get(provider=provider, name="CP-Video-High")
    assert created.rate_plans.count() == 0
    assert Device.objects.filter(provider=provider, communication_plan=created).count() == sum(
        1 for _, _, comm in carrier_simulator.carrier.snapshot().values() if comm == "CP-Video-High")
    announcement = next(m for m in mail.outbox if m.subject == NEW_COMM_PLANS_SUBJECT)
    assert announcement.to == ["fleet-ops@example.com", *OPS] and "CP-Video-High" in announcement.body
    assert sync(provider).new_communication_plans == []


def test_signal_is_sent_inside_the_merge_transaction(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    seen = []

    def receiver(sender, sync_run, provider, **kwargs):
        seen.append((sender, sync_run.status, provider.pk, Device.objects.filter(provider=provider).count()))

    device_sync_completed.connect(receiver)
    try:
        run = sync(provider)
    finally:
        device_sync_completed.disconnect(receiver)
    assert seen == [(SyncRun, "succeeded", provider.pk, 200)]
    assert run.status == "succeeded"


def test_a_failing_signal_receiver_rolls_the_merge_back(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)

    def receiver(**kwargs):
        raise RuntimeError("outbox is full")

    device_sync_completed.connect(receiver)
    try:
        with pytest.raises(RuntimeError, match="outbox is full"):
            sync(provider)
    finally:
        device_sync_completed.disconnect(receiver)
    run = SyncRun.objects.get(provider=provider)
    assert run.status == "failed" and "RuntimeError: outbox is full" in run.error
    assert run.inserted == 0 and Device.objects.filter(provider=provider).count() == 0
    provider.refresh_from_db()
    assert provider.last_device_sync_at is None


def test_page_guard_fails_the_sync(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant, max_pages=2)
    run = sync(provider)
    assert run.status == "failed" and "within max_pages=2" in run.error
    assert Device.objects.filter(provider=provider).count() == 0


def test_a_second_sync_of_the_same_account_is_refused_while_one_runs(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    running = SyncRun.objects.create(provider=provider, kind="full")
    run = sync(provider)
    assert run.status == "failed" and f"sync #{running.pk} of this account is still running" in run.error
    assert carrier_simulator.carrier.request_log() == []
    # A run whose worker still beats its heartbeat blocks, however long it has run.
    SyncRun.objects.filter(pk=running.pk).update(started_at=timezone.now() - dt.timedelta(hours=7),
                                                 heartbeat_at=timezone.now())
    assert sync(provider).status == "failed"
    # One whose heartbeat stopped for longer than STAGE_STALL_SECONDS does not block: it is taken over.
    SyncRun.objects.filter(pk=running.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(seconds=settings.STAGE_STALL_SECONDS + 1))
    assert sync(provider).status == "succeeded"
    assert "no heartbeat for more than" in SyncRun.objects.get(pk=running.pk).error


def test_integration_without_a_client_fails_the_run_clearly(tenant):
    provider = factories.ServiceProviderFactory(tenant=tenant, integration="ThingSpace")
    run = device_sync(provider=provider)
    assert run.status == "failed" and "integration 'ThingSpace' is not supported yet" in run.error


class ScriptedCarrier(CarrierClient):
    """A test double at the adapter boundary: serves hand-written pages, for rows the simulator never sends."""

    def __init__(self, pages):
        super().__init__(label="scripted carrier", max_concurrency=1, max_pages=10)
        self.pages = pages
        self.details_read = []

    def list_devices_page(self, *, modified_since, page_number, page_size=50):
        return self.pages[page_number - 1]

    def get_device(self, iccid):
        self.details_read.append(iccid)  # only for the customer, which the device list does not carry
        return DeviceDetails(iccid=iccid, status=None, rate_plan=None, communication_plan=None, customer="")

    def get_ctd_usage(self, iccid):
        raise AssertionError("device_sync does not read usage")

    def change_rate_plan(self, iccid, rate_plan, effective_date=None):
        raise AssertionError("device_sync changes nothing at the carrier")


def test_rows_are_validated_and_rejected_with_reasons(tenant):
    provider = factories.ServiceProviderFactory(tenant=tenant)
    factories.RatePlanFactory(provider=provider, code="PLAN-A")
    good = dict(status="ACTIVATED", rate_plan="PLAN-A", communication_plan="CP-1")
    page1 = DevicePage(page_number=1, last_page=False, devices=[
        DeviceRecord(iccid="8901260000000000001", **good),
        DeviceRecord(iccid="12345", **good),
        DeviceRecord(iccid=None, problem="entry 2 of page 1 is not a JSON object"),
        DeviceRecord(iccid="8901260000000000002", **{**good, "status": None}),
        DeviceRecord(iccid="8901260000000000003", **{**good, "status": "ON_FIRE"}),
        DeviceRecord(iccid="8901260000000000004", **{**good, "rate_plan": ""}),
        DeviceRecord(iccid="8901260000000000005", **{**good, "communication_plan": None}),
        DeviceRecord(iccid="8901260000000000006", problem="dateUpdated 'soon' is not a date"),
        DeviceRecord(iccid="8901260000000000007", **good),
        DeviceRecord(iccid="8901260000000000007", **{**good, "status": "DEACTIVATED"}),  # newer, same page
    ])
    page2 = DevicePage(page_number=2, last_page=True, devices=[
        DeviceRecord(iccid="8901260000000000001", **{**good, "status": "RETIRED"}),  # newer, next page
    ])
    with ScriptedCarrier([page1, page2]) as client:
        run = device_sync(provider=provider, client=client)
    assert run.status == "succeeded"
    assert (run.devices_seen, run.inserted, run.rejected, run.duplicates) == (9, 2, 7, 2)
    reasons = {r["iccid"]: r["reason"] for r in run.rejects}
    assert reasons == {
        "12345": "iccid '12345' is not 19-20 digits",
        None: "entry 2 of page 1 is not a JSON object",
        "8901260000000000002": "status is missing",
        "8901260000000000003": "status 'ON_FIRE' is not a SIM status carrieropt knows",
        "8901260000000000004": "ratePlan is missing",
        "8901260000000000005": "communicationPlan is missing",
        "8901260000000000006": "dateUpdated 'soon' is not a date",
    }
    assert device_state(provider) == {"8901260000000000001": ("RETIRED", "PLAN-A", "CP-1"),
                                      "8901260000000000007": ("DEACTIVATED", "PLAN-A", "CP-1")}
    assert sorted(client.details_read) == ["8901260000000000001", "8901260000000000007"], "rejected rows: not read"


# -- usage sync ------------------------------------------------------------------------------------------

def synced_provider(server, tenant, **fields):
    provider = simulated_provider(server=server, tenant=tenant, **fields)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
    return provider


def usage(provider, *, timeout=0.25, attempts=5, **kwargs) -> SyncRun:
    with fast_client(provider, timeout=timeout, attempts=attempts) as client:
        run = usage_sync(provider=provider, client=client, **kwargs)
    run.refresh_from_db()
    return run


def rows(provider):
    return {u.device.iccid: u for u in DeviceUsage.objects.filter(device__provider=provider).select_related("device")}


def test_usage_of_activated_sims_becomes_mb_and_a_projection(tenant, carrier_simulator_factory):
    frozen = time.time()
    server = carrier_simulator_factory(sims=300, seed=7, clock=lambda: frozen)  # usage as of one instant
    provider = synced_provider(server, tenant)
    server.carrier.clear_log()
    run = usage(provider)
    assert (run.kind, run.status, run.error) == ("usage", "succeeded", "")
    statuses = {iccid: s for iccid, (s, _, _) in server.carrier.snapshot().items()}
    period = billing_period_current(provider=provider)
    # Every ACTIVATED SIM, and those deactivated during this cycle (the carrier bills them for it).
    stopped = set(Device.objects.filter(provider=provider, status="DEACTIVATED", deactivated_at__gte=period.starts_at())
                  .values_list("iccid", flat=True))
    activated = {i for i, s in statuses.items() if s == "ACTIVATED"} | stopped
    assert stopped and all(statuses[i] == "DEACTIVATED" for i in stopped)
    assert (run.devices_seen, run.inserted, run.updated, run.skipped) == (len(activated), len(activated), 0,
                                                                        300 - len(activated))
    # Usage by rate plan pages the non-shared plans; only SIMs on shared ones are asked one by one.
    assert run.calls == len(server.carrier.request_log("/rws/api/v1/")) < len(activated) and run.retries == 0
    got = rows(provider)
    assert set(got) == activated  # no call spent on SIMs the optimizer does not price
    for iccid, row in got.items():
        expected = server.carrier.ctd_bytes(iccid, at=frozen)
        assert row.ctd_bytes == expected and row.billing_period == period
        assert row.usage_mb == Decimal(f"{bytes_to_mb(expected):.3f}")
        assert row.projected_mb == Decimal(f"{projected_mb(expected / BYTES_PER_MB, status=statuses[iccid], usage_date=row.usage_date, period_start=period.starts_at(), period_end=period.ends_at(), now=row.usage_date):.3f}")
        assert row.projected_mb >= row.usage_mb
    provider.refresh_from_db()
    assert provider.last_usage_sync_at == run.finished_at


def test_a_second_usage_sync_updates_the_same_rows(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    first = usage(provider)
    second = usage(provider)
    assert second.inserted == 0 and second.updated == first.inserted > 0
    assert DeviceUsage.objects.filter(device__provider=provider).count() == first.inserted


def test_usage_with_ten_percent_faults_gets_every_sim(tenant, carrier_simulator_factory):
    server = carrier_simulator_factory(sims=1_000, seed=5, faults=Faults(error_rate=0.1, hang_seconds=0.5))
    server.carrier.faults.error_rate = 0  # a clean device sync first
    provider = synced_provider(server, tenant)
    server.carrier.faults.error_rate = 0.1
    server.carrier.clear_log()
    with fast_client(provider, timeout=0.2, attempts=6) as client:
        run = usage_sync(provider=provider, client=client)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    injected = sum(server.carrier.counts[k] for k in ("500", "throttled", "timeout"))
    # On a busy machine an answer that was not a fault can still come later than 0.2 s: also retried.
    late = client.stats.timeouts - server.carrier.counts["timeout"]
    assert late >= 0 and injected > 50
    assert run.retries == injected + late
    # Every attempt is counted: the carrier saw as many calls (paged and per SIM) as the run says.
    assert run.calls == len(server.carrier.request_log("/rws/api/v1/")) and run.calls > run.retries
    assert len(rows(provider)) == run.devices_seen == run.inserted


def test_a_carrier_outage_fails_the_run_and_keeps_the_previous_usage(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant, max_concurrency=1)
    assert usage(provider).status == "succeeded"
    before = {i: (u.ctd_bytes, u.usage_mb, u.projected_mb, u.usage_date) for i, u in rows(provider).items()}
    carrier_simulator.carrier.faults.script.extend(["ok"] * 40)
    carrier_simulator.carrier.faults.outage = True
    run = usage(provider, attempts=10)
    assert run.status == "failed" and "gave up after 10 attempts" in run.error
    # 40 answers, then one SIM failed for good after 10 attempts (the call queued behind it may have started).
    assert run.error.endswith("DeviceUsage unchanged.") and 50 <= run.calls <= 60
    assert {i: (u.ctd_bytes, u.usage_mb, u.projected_mb, u.usage_date) for i, u in rows(provider).items()} == before


def test_a_sim_the_carrier_no_longer_knows_is_rejected_and_the_rest_written(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    factories.DeviceFactory(provider=provider, iccid="8901269999000000009", status="ACTIVATED")
    run = usage(provider)
    assert run.status == "succeeded" and run.rejected == 1
    assert run.rejects[0]["iccid"] == "8901269999000000009"
    assert "does not know ICCID 8901269999000000009" in run.rejects[0]["reason"]
    assert "8901269999000000009" not in rows(provider) and len(rows(provider)) == run.devices_seen - 1


def test_wider_statuses_are_asked_about_when_requested(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    run = usage(provider, statuses=["ACTIVATED", "DEACTIVATED", "INVENTORY"])
    assert run.skipped == 0 and run.devices_seen == 200
    deactivated = next(u for u in rows(provider).values() if u.device.status == "DEACTIVATED")
    assert deactivated.projected_mb == deactivated.usage_mb  # the legacy rule: no projection once deactivated


def test_only_the_current_billing_period_can_be_filled(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    old = factories.BillingPeriodFactory(provider=provider, start_date=dt.date(2020, 1, 1), end_date=dt.date(2020, 1, 31))
    carrier_simulator.carrier.clear_log()
    run = usage(provider, period=old)
    assert run.status == "failed" and run.error.startswith("period: billing period 2020-01-01")
    assert carrier_simulator.carrier.request_log("/rws/api/v1/devices/") == []


def test_usage_sync_refused_while_another_runs(tenant, carrier_simulator):
    provider = synced_provider(carrier_simulator, tenant)
    SyncRun.objects.create(provider=provider, kind="usage", started_at=timezone.now())
    run = usage(provider)
    assert run.status == "failed" and "still running" in run.error


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                    reason="planner statistics are PostgreSQL's")
def test_a_big_sync_leaves_the_planner_statistics_of_the_fleet_it_wrote(tenant, carrier_simulator_factory, monkeypatch):
    """After a sync that wrote many SIMs and their usage, the planner's row counts are those of the tables as
    written (without it, a session right after estimated one SIM per account and probed usage SIM by SIM)."""
    from django.db import connection

    from devices import staging

    monkeypatch.setattr(staging, "ANALYZE_AFTER_ROWS", 100)
    server = carrier_simulator_factory(sims=300, seed=7)
    provider = simulated_provider(server=server, tenant=tenant)
    assert sync(provider).status == "succeeded"
    with fast_client(provider) as client:
        assert usage_sync(provider=provider, client=client).status == "succeeded"

    def planner_rows(table):
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
            return cursor.fetchone()[0]

    assert planner_rows("devices_device") == Device.objects.count() >= 300
    assert planner_rows("devices_deviceusage") == DeviceUsage.objects.count() > 200
