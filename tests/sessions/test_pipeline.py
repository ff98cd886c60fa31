"""sessions.pipeline: a whole session, stage by stage, with tasks run inline (django-q2 sync mode) on stored data,
against the carrier simulator with AMOP receiving every event, and a long carrier sync that duplicates of its task
must leave alone."""
import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pytest
from django.core import mail
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from carriers.simulator.testing import running_simulator
from devices.models import Device, SyncRun
from devices.testing import simulated_provider
from optimizer import engine
from optimizer.models import CommGroup, DeviceAssignment, GroupStatus, OptimizationQueue, OptimizationResult
from optimizer.selectors import catalogue_from_plans, days_active
from rateplans.models import RatePlan
from sessions import pipeline, tasks
from sessions.models import OptimizationSession, ProgressEvent, Stage
from sessions.services import session_start
from sessions.webhooks import SIGNATURE_HEADER, signature_valid
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.demo(devices=600, seed=11)]
SECRET = "amop-test-secret"
NO_COMMITS = pytest.mark.django_db
SMALL_DEMO = pytest.mark.demo(devices=50, seed=3)


def run_session(provider, **kwargs):
    session = session_start(provider=provider, sync_devices=False, **kwargs)
    return OptimizationSession.objects.get(pk=session.pk)


def test_session_runs_to_100_with_ordered_events(inline_tasks, demo):
    session = run_session(demo.provider)
    assert session.status == "succeeded", session.error
    progress = list(session.events.order_by("sequence").values_list("progress", flat=True))
    assert progress[:5] == [0, 20, 30, 40, 50] and progress[-2:] == [90, 100]
    assert progress == sorted(progress) and len(set(progress)) == len(progress)
    run = session.run
    assert run.status == "CompleteWithSuccess"
    assert set(session.stage_timings) >= {"start", "sync", "grouping", "queueing", "optimizing", "finalizing", "complete"}


def test_stored_costs_recompute_from_the_assignments(inline_tasks, demo):
    session = run_session(demo.provider)
    run = session.run
    rows = DeviceAssignment.objects.filter(run=run)
    assert rows.count() == session.device_count > 0
    # Per-SIM costs add up to the session total to the cent.
    assert abs(rows.aggregate(s=Sum("recommended_cost"))["s"] - session.optimized_cost) < Decimal("0.01")
    assert abs(rows.aggregate(s=Sum("current_cost"))["s"] - session.current_cost) < Decimal("0.01")
    # And an independent pricing of the stored plans per group gives the stored group cost: SIMs with usage
    # priced with their proration factor (the demo account prorates), SIMs without usage at the fixed charge.
    period = session.billing_period
    for group in CommGroup.objects.filter(run=run, status=GroupStatus.OPTIMIZED):
        plans = list(group.rate_plans.order_by("pk"))
        index = {p.pk: i for i, p in enumerate(plans)}
        priced = rows.filter(comm_group=group, usage_mb__isnull=False)
        sims = list(priced.values_list("usage_mb", "recommended_plan_id", "device__date_activated",
                                       "device__deactivated_at", "device__status"))
        factor = np.array([days_active(period=period, tz=demo.provider.tz, activated=a,
                                       stopped=d if s != "ACTIVATED" else None) / period.days_in_cycle
                           for _, _, a, d, s in sims])
        problem = engine.Problem(
            catalogue=catalogue_from_plans(plans), usage_mb=np.array([float(u) for u, *_ in sims]),
            group=np.zeros(len(sims), dtype=np.int32), allowed=np.ones((1, len(plans)), dtype=bool), factor=factor,
        )
        assignment = np.array([index[p] for _, p, *_ in sims], dtype=np.int32)
        fixed = rows.filter(comm_group=group, usage_mb__isnull=True).aggregate(s=Sum("recommended_cost"))["s"] or 0
        assert abs(engine.price(problem, assignment).total + float(fixed) - float(group.optimized_cost)) < 0.01


def test_optimized_cost_is_never_above_current_or_baseline_and_bound_is_below(inline_tasks, demo):
    session = run_session(demo.provider)
    assert session.optimized_cost <= session.current_cost
    assert session.optimized_cost <= session.baseline_cost
    assert session.lower_bound is not None and session.lower_bound <= session.optimized_cost
    assert session.savings > 0  # the demo fleet sits on oversized plans


def test_recommended_plans_are_allowed_by_the_communication_plan(inline_tasks, demo):
    session = run_session(demo.provider)
    for group in CommGroup.objects.filter(run=session.run):
        allowed = set(group.rate_plans.values_list("pk", flat=True))
        used = set(DeviceAssignment.objects.filter(comm_group=group).values_list("recommended_plan_id", flat=True))
        assert used <= allowed


def test_certified_is_not_worse_than_legacy(inline_tasks, demo):
    certified = run_session(demo.provider, method="certified")
    legacy = run_session(demo.provider, method="legacy")
    assert legacy.status == "succeeded", legacy.error
    assert legacy.lower_bound is None
    assert certified.optimized_cost <= legacy.optimized_cost


def test_invalid_catalogue_fails_the_session_with_the_legacy_error(inline_tasks, demo):
    RatePlan.objects.filter(provider=demo.provider, code="M2M-5MB").update(overage_rate=0)
    session = run_session(demo.provider)
    assert session.status == "failed"
    error = session.events.get(kind="ErrorMessage")
    assert error.error_message.startswith("One or more Rate Plans have invalid Data per Overage Charge or Overage Rate")
    assert "M2M-5MB" in error.error_message
    assert session.run.status == "CompleteWithErrors"
    assert not DeviceAssignment.objects.exists()


@override_settings(LEGACY_MAX_PLANS=8)  # the demo groups have 6, 9 and 7 plans
def test_group_over_the_plan_limit_is_skipped_with_alerts_and_others_continue(inline_tasks, demo):
    session = run_session(demo.provider, method="legacy")
    assert session.status == "succeeded", session.error
    groups = {g.name: g.status for g in CommGroup.objects.filter(run=session.run)}
    assert GroupStatus.SKIPPED_PLAN_LIMIT in groups.values() and GroupStatus.OPTIMIZED in groups.values()
    subjects = [m.subject for m in mail.outbox]
    assert pipeline.PLAN_LIMIT_SUBJECT in subjects and pipeline.SIM_COUNT_SUBJECT in subjects
    skipped = CommGroup.objects.get(run=session.run, status=GroupStatus.SKIPPED_PLAN_LIMIT)
    assert not DeviceAssignment.objects.filter(comm_group=skipped).exists()


def test_a_stage_or_task_delivered_twice_changes_nothing(inline_tasks, demo):
    session = run_session(demo.provider)
    run = session.run

    def snapshot():
        return (
            list(DeviceAssignment.objects.filter(run=run).order_by("device_id").values_list("device_id", "recommended_plan_id", "recommended_cost")),
            OptimizationResult.objects.count(), OptimizationQueue.objects.count(), CommGroup.objects.count(),
            list(session.events.values_list("sequence", "progress")),
        )

    before = snapshot()
    for stage in pipeline.STAGES:
        tasks.run_stage(session.pk, stage)
    for queue_id in OptimizationQueue.objects.values_list("pk", flat=True):
        tasks.run_work_item(queue_id)
    assert snapshot() == before


# -- against the carrier simulator, with AMOP receiving the events ------------------------------------------

def test_session_syncs_from_the_carrier_optimizes_and_reports_to_amop(inline_tasks, tenant_a):
    with running_simulator(sims=800, seed=21) as server, Receiver() as amop:
        provider = simulated_provider(server=server, tenant=tenant_a)
        with override_settings(AMOP_WEBHOOK_URL=amop.url, AMOP_WEBHOOK_SECRET=SECRET):
            session = session_start(provider=provider)
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status == "succeeded", session.error
    assert Device.objects.filter(provider=provider).count() == 800

    bodies = [json.loads(r["body"])["data"] for r in amop.requests]
    assert all(signature_valid(r["body"], r["headers"][SIGNATURE_HEADER], SECRET) for r in amop.requests)
    progress = [b["Progress"] for b in bodies if b.get("job_name") == "Progress"]
    assert progress[:5] == [0, 20, 30, 40, 50] and progress[-2:] == [90, 100] and progress == sorted(progress)
    sync_notices = [b for b in bodies if b.get("path") == "/lambda_sync_jobs_"]
    assert [n["key_name"] for n in sync_notices] == ["jasper_devices"]
    assert ProgressEvent.objects.filter(delivered_at__isnull=True).count() == 0

    rows = DeviceAssignment.objects.filter(run=session.run)
    assert rows.count() == session.device_count > 0
    assert abs(rows.aggregate(s=Sum("recommended_cost"))["s"] - session.optimized_cost) < Decimal("0.01")
    assert session.report_path.endswith(".xlsx")


# -- a carrier sync can run for hours ------------------------------------------------------------------------

def at_sync(provider, *, claimed_by="", heartbeat=None, started=None):
    session = session_start(provider=provider, sync_devices=True)
    pipeline.stage_start(session.pk)
    started = started or timezone.now()
    OptimizationSession.objects.filter(pk=session.pk).update(
        stage_claimed_by=claimed_by, stage_heartbeat_at=heartbeat,
        stage_timings={"sync": {"started": started.isoformat()}})
    return session


@NO_COMMITS  # nothing queued has to run
@SMALL_DEMO
def test_a_duplicate_sync_task_leaves_a_live_sync_alone(demo):
    session = at_sync(demo.provider, claimed_by="worker-a:1", heartbeat=timezone.now())
    tasks.run_stage(session.pk, Stage.SYNC)
    session.refresh_from_db()
    assert (session.status, session.stage, session.stage_claimed_by) == ("running", Stage.SYNC, "worker-a:1")
    assert not SyncRun.objects.exists()  # no second sync was started against the carrier


@NO_COMMITS  # nothing queued has to run
@SMALL_DEMO
def test_a_sync_whose_worker_stopped_beating_is_taken_over(demo, settings):
    settings.STAGE_STALL_SECONDS = 60
    session = at_sync(demo.provider, claimed_by="dead:1", heartbeat=timezone.now() - dt.timedelta(seconds=61))
    assert pipeline.stage_claim(session.pk, Stage.SYNC, worker="worker-b:2")
    assert OptimizationSession.objects.get(pk=session.pk).stage_claimed_by == "worker-b:2"
    assert not pipeline.stage_claim(session.pk, Stage.SYNC, worker="worker-c:3")  # b is alive now


@NO_COMMITS  # nothing queued has to run
@SMALL_DEMO
def test_heartbeat_keeps_the_deadline_ahead_of_a_moving_sync(demo, settings):
    settings.STAGE_HEARTBEAT_SECONDS = 0
    session = at_sync(demo.provider, claimed_by="worker-a:1", heartbeat=timezone.now() - dt.timedelta(minutes=5))
    OptimizationSession.objects.filter(pk=session.pk).update(deadline=timezone.now() + dt.timedelta(minutes=1))
    pipeline.Heartbeat(session.pk, "worker-a:1")()
    session.refresh_from_db()
    assert timezone.now() - session.stage_heartbeat_at < dt.timedelta(seconds=5)
    assert session.deadline > timezone.now() + dt.timedelta(minutes=settings.SESSION_DEADLINE_MINUTES - 1)
    pipeline.Heartbeat(session.pk, "someone-else:9")()  # a worker that lost the claim changes nothing
    assert OptimizationSession.objects.get(pk=session.pk).stage_heartbeat_at == session.stage_heartbeat_at


@NO_COMMITS  # nothing queued has to run
@SMALL_DEMO
def test_the_sync_stage_task_is_enqueued_with_its_own_long_timeout(demo, settings, monkeypatch, django_capture_on_commit_callbacks):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: calls.append((a, k)))
    session = session_start(provider=demo.provider)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.stage_start(session.pk)
    assert calls == [(("sessions.tasks.run_stage", session.pk, Stage.SYNC), {"timeout": settings.SYNC_STAGE_TIMEOUT})]
