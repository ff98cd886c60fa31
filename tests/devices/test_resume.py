"""Syncs that stop part-way resume from their checkpoint; a dead sync's claim is taken over; the background sync.

Real syncs against the simulator: a device sync stopped at a page (its worker "dies": an exception that is
not an Exception, so nothing marks the run failed) leaves its committed staging and checkpoint; the next sync
takes the claim over once the heartbeat is older than STAGE_STALL_SECONDS and reads only the pages after it.
"""
from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from devices import services, tasks
from devices.models import Device, DeviceStaging, DeviceUsage, SyncRun
from devices.services import device_sync, usage_sync
from devices.testing import billed, fast_client, simulated_provider
from tests import factories

LIST = "/rws/api/v1/devices"


class WorkerDied(BaseException):
    """What a killed worker looks like to the code it was running: it simply stops (no except Exception runs)."""


def die_at(kind: str, when):
    def progress(event):
        if event.kind == kind and when(event):
            raise WorkerDied
    return progress


def list_pages(server) -> list[int]:
    return [int(r["query"]["pageNumber"]) for r in server.carrier.request_log(LIST) if r["path"] == LIST]


def usage_asked(server) -> list[str]:
    return [r["path"].split("/")[-2] for r in server.carrier.request_log(LIST + "/") if r["path"].endswith("/ctdUsages")]


def state(provider) -> dict[str, tuple]:
    return {iccid: (status, plan, comm) for iccid, status, plan, comm in Device.objects.filter(provider=provider)
            .values_list("iccid", "status", "rate_plan_code", "communication_plan_name")}


def stall(run: SyncRun) -> None:
    """Its worker is gone: the heartbeat is older than STAGE_STALL_SECONDS."""
    SyncRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(seconds=settings.STAGE_STALL_SECONDS + 1))


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(services, "STAGING_BATCH_ROWS", 100)  # two 50-SIM pages per committed chunk
    monkeypatch.setattr(services, "USAGE_CHUNK_ROWS", 40)


def test_a_device_sync_killed_at_60_percent_resumes_after_its_checkpoint(tenant, carrier_simulator_factory,
                                                                          small_chunks):
    server = carrier_simulator_factory(sims=500, seed=3)  # 10 pages of 50
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    with fast_client(provider) as client, pytest.raises(WorkerDied):
        device_sync(provider=provider, client=client, progress=die_at("devices", lambda e: e.done == 5))
    dead = SyncRun.objects.get()
    # Pages 1-5 were read (and 6 asked ahead); 1-4 are committed (two chunks of 100 SIMs), page 5's rows died
    # with the worker.
    assert (dead.status, dead.checkpoint_page) == ("running", 4)
    assert DeviceStaging.objects.filter(sync_run=dead).count() == 200
    assert not Device.objects.filter(provider=provider).exists()  # the merge is all or nothing

    # While its heartbeat is fresh, the run blocks the account; once it is stale, the next sync takes over.
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "failed"
    stall(dead)
    before = len(list_pages(server))
    with fast_client(provider) as client:
        run = device_sync(provider=provider, client=client)
    assert run.status == "succeeded", run.error
    dead.refresh_from_db()
    assert dead.status == "failed" and "no heartbeat" in dead.error
    assert run.resumed_from_id == dead.pk and run.kind == "full" and run.modified_since == dead.modified_since
    resumed_pages = list_pages(server)[before:]
    # Nothing before the checkpoint is read again (page 11 is the one asked ahead past the last).
    assert resumed_pages[0] == 5 and sorted(set(resumed_pages) - {11}) == list(range(5, 11))
    # Every SIM once, exactly as an uninterrupted sync would leave the table; the watermark is the first run's.
    assert state(provider) == server.carrier.snapshot()
    assert (run.pages, run.devices_seen, run.inserted, run.duplicates) == (10, 500, 500, 0)
    assert run.watermark == dead.started_at - services.WATERMARK_OVERLAP
    # In all: 5 (+1 ahead) + 6 pages against 10 (+1 ahead) uninterrupted: the uncommitted page and the one ahead.
    assert len(list_pages(server)) <= 10 + 1 + 2


def test_a_device_sync_that_failed_on_the_carrier_is_resumed_by_the_next(tenant, carrier_simulator_factory,
                                                                         small_chunks):
    server = carrier_simulator_factory(sims=300, seed=4)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    server.carrier.faults.script.extend(["ok"] * 4)
    server.carrier.faults.outage = True
    with fast_client(provider, attempts=2) as client:
        failed = device_sync(provider=provider, client=client)
    assert failed.status == "failed" and failed.checkpoint_page == 4
    server.carrier.faults.outage = False
    with fast_client(provider) as client:
        run = device_sync(provider=provider, client=client)
    assert run.status == "succeeded" and run.resumed_from_id == failed.pk
    assert state(provider) == server.carrier.snapshot()


def test_a_sync_that_was_taken_over_stops_and_writes_nothing_more(tenant, carrier_simulator_factory, small_chunks):
    server = carrier_simulator_factory(sims=500, seed=5)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)

    def taken_over(event):
        if event.done == 3:  # another worker decided this one was dead
            SyncRun.objects.filter(status="running").update(status="failed", error="taken over by sync #99")

    with fast_client(provider) as client:
        run = device_sync(provider=provider, client=client, progress=taken_over)
    assert run.status == "failed" and run.error == "taken over by sync #99"
    assert run.checkpoint_page == 2 and DeviceStaging.objects.filter(sync_run=run).count() == 100
    assert not Device.objects.filter(provider=provider).exists()
    assert max(list_pages(server)) <= 5


def test_a_usage_sync_killed_part_way_resumes_with_the_sims_it_has_not_stored(tenant, carrier_simulator_factory,
                                                                               small_chunks):
    server = carrier_simulator_factory(sims=200, seed=7)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
    with fast_client(provider) as client, pytest.raises(WorkerDied):
        usage_sync(provider=provider, client=client, progress=die_at("usage", lambda e: e.done >= 0.6 * e.total))
    dead = SyncRun.objects.get(kind="usage")
    rows = DeviceUsage.objects.filter(device__provider=provider)
    committed = set(rows.values_list("device__iccid", flat=True))
    assert len(committed) == 80  # two chunks of 40 committed before the worker died past 60 %
    assert set(rows.values_list("synced_at", flat=True)) == {dead.started_at}
    stall(dead)
    server.carrier.clear_log()
    with fast_client(provider) as client:
        run = usage_sync(provider=provider, client=client)
    assert run.status == "succeeded" and run.resumed_from_id == dead.pk
    resumed = set(rows.filter(synced_at=run.started_at).values_list("device__iccid", flat=True))
    # No SIM stored before the kill is asked again or stored again; together they are every SIM the carrier has
    # usage for.
    assert not committed & set(usage_asked(server)) and not committed & resumed
    unavailable = {i for i in billed(provider) if server.carrier._usage_missing(i)}
    assert committed | resumed == billed(provider) - unavailable
    assert run.devices_seen == len(resumed) + len(unavailable)


def test_a_usage_top_up_asks_only_for_sims_without_fresh_usage(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
        first = usage_sync(provider=provider, client=client)
    assert first.status == "succeeded" and first.devices_seen > 100
    rows = DeviceUsage.objects.filter(device__provider=provider)
    stale = set(rows.order_by("pk")[:30].values_list("device__iccid", flat=True))
    rows.filter(device__iccid__in=stale).update(synced_at=timezone.now() - dt.timedelta(hours=30))
    carrier_simulator.carrier.clear_log()
    with fast_client(provider) as client:
        top_up = usage_sync(provider=provider, client=client, fresh_since=timezone.now() - dt.timedelta(hours=24))
    assert top_up.status == "succeeded"
    unavailable = {i for i in billed(provider) if carrier_simulator.carrier._usage_missing(i)}
    assert top_up.devices_seen == 30 + len(unavailable)
    assert set(rows.filter(synced_at=top_up.started_at).values_list("device__iccid", flat=True)) == stale
    assert set(rows.filter(synced_at=first.started_at).values_list("device__iccid", flat=True)) == (
        billed(provider) - unavailable - stale)
    # A plan is paged only where that takes fewer calls than asking its stale SIMs one by one.
    assert set(usage_asked(carrier_simulator)) <= stale | unavailable
    assert top_up.calls <= len(stale) + (1 + settings.USAGE_RETRY_ROUNDS) * len(unavailable)


@override_settings(BACKGROUND_SYNC_HOURS=24)
def test_the_background_sync_syncs_accounts_that_are_due_and_yields_to_a_session(tenant, carrier_simulator):
    provider = simulated_provider(server=carrier_simulator, tenant=tenant)
    factories.ServiceProviderFactory(tenant=tenant, active=False)
    assert tasks.background_due() == [provider]
    outcome = tasks.background_sync(provider.pk)
    assert "usage sync" in outcome and "succeeded" in outcome, outcome
    assert SyncRun.objects.filter(provider=provider, background=True, status="succeeded").count() == 2
    provider.refresh_from_db()
    assert tasks.background_due() == []  # usage is fresh now
    # A running background sync is taken over by another (a session's) sync at once, heartbeat or not.
    background = SyncRun.objects.create(provider=provider, kind="incremental", background=True,
                                        heartbeat_at=timezone.now())
    with fast_client(provider) as client:
        run = device_sync(provider=provider, client=client)
    assert run.status == "succeeded"
    background.refresh_from_db()
    assert background.status == "failed" and f"taken over by sync #{run.pk}" in background.error
    # ...but a background sync waits for a running sync.
    SyncRun.objects.create(provider=provider, kind="incremental", heartbeat_at=timezone.now())
    refused = device_sync(provider=provider, background=True)
    assert refused.status == "failed" and "still running" in refused.error


@override_settings(BACKGROUND_SYNC_HOURS=0)
def test_the_background_sync_can_be_switched_off(tenant, carrier_simulator):
    simulated_provider(server=carrier_simulator, tenant=tenant)
    assert tasks.background_due() == [] and tasks.background_syncs() == 0


def test_a_resumed_device_sync_that_fails_again_before_its_checkpoint_hands_on_its_counts(
        tenant, carrier_simulator_factory, small_chunks):
    server = carrier_simulator_factory(sims=300, seed=4)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    server.carrier.faults.script.extend(["ok"] * 4)
    server.carrier.faults.outage = True
    with fast_client(provider, attempts=2) as client:
        first = device_sync(provider=provider, client=client)
    assert first.status == "failed" and first.checkpoint_page == 4
    # The carrier still fails on the very next page: the resumed run stops before a checkpoint of its own.
    with fast_client(provider, attempts=2) as client:
        second = device_sync(provider=provider, client=client)
    assert second.status == "failed" and second.resumed_from_id == first.pk
    assert (second.checkpoint_page, second.devices_seen, second.rejected) == (
        first.checkpoint_page, first.devices_seen, first.rejected)
    server.carrier.faults.outage = False
    with fast_client(provider) as client:
        run = device_sync(provider=provider, client=client)
    assert run.status == "succeeded" and run.resumed_from_id == second.pk
    # Every SIM counted once over the chain: no negative 'duplicates' that would keep the watermark and skip
    # marking missing SIMs.
    assert (run.duplicates, run.error) == (0, "")
    assert run.devices_seen == 300
    assert run.watermark == first.started_at - services.WATERMARK_OVERLAP
    assert state(provider) == server.carrier.snapshot()


def test_a_resumed_usage_top_up_still_asks_for_what_the_stopped_run_stored_before_fresh_since(
        tenant, carrier_simulator_factory, small_chunks):
    server = carrier_simulator_factory(sims=200, seed=7)
    provider = simulated_provider(server=server, tenant=tenant, max_concurrency=1)
    with fast_client(provider) as client:
        assert device_sync(provider=provider, client=client).status == "succeeded"
    with fast_client(provider) as client, pytest.raises(WorkerDied):
        usage_sync(provider=provider, client=client, progress=die_at("usage", lambda e: e.done >= 0.6 * e.total))
    dead = SyncRun.objects.get(kind="usage")
    rows = DeviceUsage.objects.filter(device__provider=provider)
    committed = set(rows.values_list("device__iccid", flat=True))
    assert committed
    stall(dead)
    # The caller wants usage stored after the stopped run began (a short USAGE_MAX_AGE_HOURS): its rows are
    # stale to this caller and are read again.
    with fast_client(provider) as client:
        run = usage_sync(provider=provider, client=client, fresh_since=timezone.now())
    assert run.status == "succeeded"
    assert committed <= set(rows.filter(synced_at=run.started_at).values_list("device__iccid", flat=True))
