"""A whole session, stage by stage, with tasks run inline (django-q2 sync mode) on stored data."""
from decimal import Decimal

import numpy as np
import pytest
from django.core import mail
from django.db.models import Sum
from django.test import override_settings

from devices.demo import demo_seed
from optimizer import engine
from optimizer.models import CommGroup, DeviceAssignment, GroupStatus, OptimizationQueue, OptimizationResult
from optimizer.selectors import catalogue_from_plans
from rateplans.models import RatePlan
from sessions import pipeline, tasks
from sessions.models import OptimizationSession
from sessions.services import session_start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline_tasks(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def demo():
    return demo_seed(devices=600, seed=11)


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
    # And an independent pricing of the stored plans per group gives the stored group cost.
    for group in CommGroup.objects.filter(run=run, status=GroupStatus.OPTIMIZED):
        plans = list(group.rate_plans.order_by("pk"))
        index = {p.pk: i for i, p in enumerate(plans)}
        sims = list(rows.filter(comm_group=group).values_list("usage_mb", "recommended_plan_id"))
        problem = engine.Problem(
            catalogue=catalogue_from_plans(plans), usage_mb=np.array([float(u) for u, _ in sims]),
            group=np.zeros(len(sims), dtype=np.int32), allowed=np.ones((1, len(plans)), dtype=bool),
        )
        assignment = np.array([index[p] for _, p in sims], dtype=np.int32)
        assert abs(engine.price(problem, assignment).total - float(group.optimized_cost)) < 0.01


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
