"""optimizer.services on a small seeded fleet: grouping by plan set with catalogue validation, work items made
once, a work item run once and priced by the cost model, and finalize, which prices what is there now, once,
always with a bound that covers it, in a number of queries that does not grow with the SIMs."""
import errno
import os
import threading
from decimal import Decimal

import numpy as np
import pytest
from django.core import mail
from django.db import connection, transaction
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.models import Device, DeviceUsage
from optimizer import engine
from optimizer import services as optimizer_services
from optimizer.models import (
    CommGroup,
    DeviceAssignment,
    GroupStatus,
    OptimizationQueue,
    OptimizationRun,
    QueueStatus,
    RunStatus,
)
from optimizer.selectors import billable_devices, group_data
from rateplans.models import CommunicationPlan, RatePlan
from rateplans.services import billing_period_current
from sessions import pipeline, tasks
from sessions.models import OptimizationSession, Stage
from sessions.services import session_start
from tests import factories
from tests.factories_results import fleet_seed
from tests.report_storage import use_report_folder

pytestmark = pytest.mark.demo(devices=300, seed=12)
# results_finalize of a one-group run (measured: 17 at 10 and at 30 SIMs; one reads the run with its account and
# cycle, for the time zone and proration of every group; the rows no change rank waits for are written apart, and
# on PostgreSQL their SIMs' key is checked as they are: its constraint's name read, checked now, deferred again)
FINALIZE_MAX_QUERIES = 17
FINALIZE_MAX_QUERIES_POSTGRESQL = FINALIZE_MAX_QUERIES + 3


def up_to_finalize(provider, **kwargs):
    """Run the stages and every work item; stop before finalize (no commit hooks run under `db`)."""
    session = session_start(provider=provider, sync_devices=False, **kwargs)
    pipeline.stage_start(session.pk)
    pipeline.stage_sync(session.pk)
    pipeline.stage_grouping(session.pk)
    pipeline.stage_queueing(session.pk)
    for item in session.run.queues.all():
        tasks.run_work_item(item.pk)
    session.refresh_from_db()
    assert session.stage == Stage.FINALIZING
    return session


def assert_consistent(session):
    assert session.status == "succeeded", session.error
    assert session.lower_bound is not None and session.lower_bound <= session.optimized_cost
    for group in CommGroup.objects.filter(run=session.run).exclude(optimized_cost=None):
        assert group.lower_bound <= group.optimized_cost, group.name


def test_a_sync_between_the_work_items_and_finalize_is_priced_and_bounded_on_the_new_data(demo):
    session = up_to_finalize(demo.provider)
    period = session.billing_period
    # Meanwhile a sync brings one more SIM and much lower usage for everyone.
    comm = CommunicationPlan.objects.get(provider=demo.provider, name="CP-Fleet-Standard")
    extra = factories.DeviceFactory(provider=demo.provider, iccid="8901269999999999999", communication_plan=comm,
                                    rate_plan=comm.rate_plans.order_by("included_mb").first())
    DeviceUsage.objects.create(device=extra, billing_period=period, projected_mb=Decimal("3"))
    DeviceUsage.objects.filter(billing_period=period).update(projected_mb=Decimal("0.5"))

    pipeline.stage_finalizing(session.pk)
    session.refresh_from_db()
    assert_consistent(session)
    billable = billable_devices(provider_id=demo.provider.pk, period=period).count()
    assert billable > Device.objects.filter(provider=demo.provider, status="ACTIVATED").count()  # and stopped ones
    assert DeviceAssignment.objects.filter(run=session.run).count() == billable == session.device_count
    assert DeviceAssignment.objects.filter(run=session.run, device=extra).exists()


def test_a_second_finalize_delivery_while_the_first_runs_does_nothing(demo):
    session = up_to_finalize(demo.provider)
    OptimizationSession.objects.filter(pk=session.pk).update(stage_claimed_by="other-worker:1",
                                                             stage_heartbeat_at=timezone.now())
    pipeline.stage_finalizing(session.pk)
    session.refresh_from_db()
    assert session.stage == Stage.FINALIZING and not DeviceAssignment.objects.exists()
    assert not [m for m in mail.outbox if m.subject.startswith("Optimization Results")]


def test_a_one_sim_group_keeps_the_session_bound(demo):
    plan = RatePlan.objects.get(provider=demo.provider, code="M2M-10GB")
    lonely = CommunicationPlan.objects.create(provider=demo.provider, name="CP-One-Device")
    lonely.rate_plans.set([plan, RatePlan.objects.get(provider=demo.provider, code="M2M-5GB-POOL")])
    device = factories.DeviceFactory(provider=demo.provider, iccid="8901268888888888888", communication_plan=lonely,
                                     rate_plan=plan)
    session = up_to_finalize(demo.provider)
    DeviceUsage.objects.create(device=device, billing_period=session.billing_period, projected_mb=Decimal("100"))
    pipeline.stage_finalizing(session.pk)
    session.refresh_from_db()
    assert_consistent(session)
    group = CommGroup.objects.get(run=session.run, communication_plans=lonely)
    assert group.device_count == 1 and group.lower_bound is not None


# -- grouping, work items, running them, finalize: the services one by one ---------------------------------------

def new_run(provider, *, method="certified"):
    run = optimizer_services.run_create(provider=provider, billing_period=billing_period_current(provider=provider),
                                        method=method)
    optimizer_services.run_start(run=run)
    return OptimizationRun.objects.select_related("provider").get(pk=run.pk)


def built(provider, *, method="certified"):
    run = new_run(provider, method=method)
    optimizer_services.comm_groups_build(run=run)
    return run


def worked(provider):
    """A run grouped and every work item of it run, as a worker runs them: ready to finalize."""
    run = built(provider)
    for queue_id in optimizer_services.work_items_create(run=run):
        optimizer_services.work_item_run(queue_id=queue_id, worker="w1")
    return run


def test_groups_are_communication_plans_with_the_same_set_of_active_rate_plans(provider_a):
    fleet_seed(provider=provider_a, groups=2, sims_per_group=3)
    low = CommunicationPlan.objects.get(provider=provider_a, name="CP-Telemetry-Low")
    twin = CommunicationPlan.objects.create(provider=provider_a, name="CP-Telemetry-Twin")
    twin.rate_plans.set(low.rate_plans.all())
    factories.DeviceFactory(provider=provider_a, communication_plan=twin, rate_plan=low.rate_plans.first())
    RatePlan.objects.create(provider=provider_a, code="M2M-RETIRED", monthly_cost=1, included_mb=1, overage_rate=1,
                            overage_block_mb=1, active=False)
    low.rate_plans.add(RatePlan.objects.get(provider=provider_a, code="M2M-RETIRED"))  # inactive: not part of the set
    idle = CommunicationPlan.objects.create(provider=provider_a, name="CP-No-Plans")

    run = new_run(provider_a)
    outcome = optimizer_services.comm_groups_build(run=run)

    assert [g.name for g in outcome.groups] == ["G1", "G2"] and outcome.skipped_no_plans == [idle]
    by_comm = {frozenset(g.communication_plans.values_list("name", flat=True)): g for g in outcome.groups}
    shared = by_comm[frozenset({"CP-Telemetry-Low", "CP-Telemetry-Twin"})]
    assert set(shared.rate_plans.values_list("code", flat=True)) == set(low.rate_plans.filter(active=True)
                                                                          .values_list("code", flat=True))
    assert shared.device_count == 4 and shared.status == GroupStatus.READY
    assert sum(g.device_count for g in outcome.groups) == Device.objects.filter(provider=provider_a).count()
    # Idempotent: a second delivery finds the same groups.
    again = optimizer_services.comm_groups_build(run=run)
    assert [g.pk for g in again.groups] == [g.pk for g in outcome.groups] and CommGroup.objects.count() == 2


def test_a_group_of_one_sim_keeps_its_baseline_and_too_many_plans_skip_a_legacy_group(provider_a, settings):
    fleet_seed(provider=provider_a, groups=2, sims_per_group=1)
    settings.LEGACY_MAX_PLANS = 8  # the demo's CP-Fleet-Standard allows 9
    outcome = optimizer_services.comm_groups_build(run=new_run(provider_a, method="legacy"))
    statuses = {g.communication_plans.get().name: g.status for g in outcome.groups}
    assert statuses == {"CP-Telemetry-Low": GroupStatus.KEPT_BASELINE, "CP-Fleet-Standard": GroupStatus.SKIPPED_PLAN_LIMIT}
    [skipped] = outcome.skipped_plan_limit
    assert skipped.note == "9 rate plans; the limit for the legacy method is 8."


def test_an_invalid_rate_plan_or_no_group_at_all_stops_the_grouping(provider_a):
    with pytest.raises(optimizer_services.NothingToOptimize):
        optimizer_services.comm_groups_build(run=new_run(provider_a))
    fleet_seed(provider=provider_a, groups=1, sims_per_group=2)
    RatePlan.objects.filter(provider=provider_a, code="M2M-5MB").update(overage_block_mb=0)
    with pytest.raises(optimizer_services.CatalogueInvalid) as refused:
        optimizer_services.comm_groups_build(run=new_run(provider_a))
    assert refused.value.extra == {"rate_plans": ["M2M-5MB"]}
    assert refused.value.message.startswith(optimizer_services.INVALID_CATALOGUE)


def test_work_items_one_per_certified_group_batches_of_sequences_for_legacy_and_made_once(provider_a, settings):
    fleet_seed(provider=provider_a, groups=2, sims_per_group=3)
    run = built(provider_a)
    pending = optimizer_services.work_items_create(run=run)
    assert len(pending) == 2 and {q.comm_group_id for q in run.queues.all()} == set(
        run.comm_groups.values_list("pk", flat=True))
    assert OptimizationRun.objects.get(pk=run.pk).status == RunStatus.RUNNING_PERMUTATIONS
    assert optimizer_services.work_items_create(run=run) == pending and run.queues.count() == 2

    settings.LEGACY_SEQUENCES_PER_ITEM = 4
    legacy = built(provider_a, method="legacy")
    optimizer_services.work_items_create(run=legacy)
    for group in legacy.comm_groups.all():
        items = list(group.queues.order_by("pk"))
        sequences = [seq for item in items for seq in item.sequences]
        assert len(items) == -(-len(sequences) // 4) and all(len(i.sequences) <= 4 for i in items)
        allowed = set(group.rate_plans.values_list("code", flat=True))
        assert sequences and all(set(seq) <= allowed for seq in sequences)


@pytest.mark.parametrize("method", ["certified", "legacy"])
def test_a_work_item_runs_once_and_stores_what_the_cost_model_says(provider_a, method):
    fleet_seed(provider=provider_a, groups=1, sims_per_group=12)
    run = built(provider_a, method=method)
    [queue_id, *_] = optimizer_services.work_items_create(run=run)
    assert optimizer_services.work_item_run(queue_id=queue_id, worker="w1")
    assert not optimizer_services.work_item_run(queue_id=queue_id, worker="w2"), "a second delivery does nothing"
    item = OptimizationQueue.objects.get(pk=queue_id)
    assert (item.status, item.claimed_by, item.attempts) == (QueueStatus.SUCCESS, "w1", 1)
    [result] = item.comm_group.results.all()
    data = group_data(group=item.comm_group)
    index = {pk: i for i, pk in enumerate(data.plan_ids.tolist())}
    assignment = np.array([index[pk] for pk in np.frombuffer(bytes(result.assignment), dtype="<i8").tolist()])
    assert len(assignment) == len(data.device_ids) == 12
    assert abs(Decimal(str(engine.price(data.problem, assignment).total)) - result.cost) < Decimal("0.0001")
    if method == "certified":
        assert result.lower_bound is not None and result.lower_bound <= result.cost
    else:
        assert result.lower_bound is None


def test_finalize_keeps_the_cheapest_candidate_per_group_and_its_totals_are_the_sums(provider_a):
    fleet_seed(provider=provider_a, groups=3, sims_per_group=5)
    run = worked(provider_a)
    with transaction.atomic():
        totals = optimizer_services.results_finalize(run=run)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETE_WITH_SUCCESS and run.finished_at is not None
    rows = DeviceAssignment.objects.filter(run=run)
    assert rows.count() == totals.devices == 15 and rows.filter(changed=True).count() == totals.changed
    assert rows.aggregate(s=Sum("recommended_cost"))["s"] == totals.optimized_cost
    assert rows.aggregate(s=Sum("current_cost"))["s"] == totals.current_cost
    groups = list(run.comm_groups.all())
    assert sum(g.optimized_cost for g in groups) == totals.optimized_cost
    assert sum(g.lower_bound for g in groups) == totals.lower_bound <= totals.optimized_cost
    for group in groups:
        assert group.optimized_cost <= min(group.current_cost, group.baseline_cost)
        assert group.status == GroupStatus.OPTIMIZED and group.results.count() <= 1, "losing results deleted"
    # Idempotent: finalizing again writes the same rows.
    before = list(rows.order_by("device_id").values_list("device_id", "recommended_plan_id", "recommended_cost"))
    with transaction.atomic():
        assert optimizer_services.results_finalize(run=run) == totals
    assert list(rows.order_by("device_id").values_list("device_id", "recommended_plan_id", "recommended_cost")) == before


def test_finalize_queries_do_not_grow_with_the_sims(provider_a, provider_b, settings, tmp_path):
    """Finalize through the pipeline, with N and with 3N SIMs in one group: the same queries."""
    use_report_folder(settings, tmp_path)
    counts = {}
    for provider, sims in ((provider_a, 10), (provider_b, 30)):
        fleet_seed(provider=provider, groups=1, sims_per_group=sims)
        session = up_to_finalize(provider)
        with CaptureQueriesContext(connection) as stage:
            pipeline.stage_finalizing(session.pk)
        session.refresh_from_db()
        assert session.status == "succeeded" and session.device_count == sims
        counts[sims] = len(stage.captured_queries)
        run = session.run
        with transaction.atomic(), CaptureQueriesContext(connection) as service:
            optimizer_services.results_finalize(run=run)
        counts[f"service {sims}"] = len(service.captured_queries)
    assert counts[10] == counts[30], counts
    most = FINALIZE_MAX_QUERIES_POSTGRESQL if connection.vendor == "postgresql" else FINALIZE_MAX_QUERIES
    assert counts["service 10"] == counts["service 30"] <= most, counts


def _finalized(provider, settings, fork_min_sims):
    settings.FINALIZE_FORK_MIN_SIMS = fork_min_sims
    run = worked(provider)
    with transaction.atomic():
        totals = optimizer_services.results_finalize(run=run)
    run.refresh_from_db()
    rows = list(DeviceAssignment.objects.filter(run=run).order_by("pk").values_list(
        "device_id", "iccid", "usage_mb", "current_plan_id", "recommended_plan_id", "current_cost", "recommended_cost",
        "changed", "kept_reason", "change_rank", "customer_id", "comm_group__name"))
    frontier = {k: v for k, v in run.frontier.items() if k != "seconds"}
    return totals, frontier, rows


def test_a_frontier_computed_by_a_forked_child_gives_the_same_rows_and_frontier(provider_a, settings):
    fleet_seed(provider=provider_a, groups=3, sims_per_group=9, seed=3)
    here = _finalized(provider_a, settings, fork_min_sims=10**9)
    forked = _finalized(provider_a, settings, fork_min_sims=0)
    assert forked == here
    assert any(r[9] is not None for r in here[2]) and here[1]["points"], "ranked changes and frontier points"


def test_a_child_that_fails_is_replaced_by_computing_the_frontier_here(provider_a, settings, monkeypatch):
    fleet_seed(provider=provider_a, groups=2, sims_per_group=8, seed=4)
    here = _finalized(provider_a, settings, fork_min_sims=10**9)

    def fails(self, send):
        raise RuntimeError("child trouble")

    monkeypatch.setattr(optimizer_services._FrontierJob, "_in_child", fails)
    assert _finalized(provider_a, settings, fork_min_sims=0) == here


def test_a_child_that_hangs_is_killed_and_the_frontier_computed_here(provider_a, settings, monkeypatch, caplog):
    fleet_seed(provider=provider_a, groups=2, sims_per_group=8, seed=4)
    here = _finalized(provider_a, settings, fork_min_sims=10**9)
    children = []

    def hangs(self, send):
        import signal  # noqa: PLC0415 - in the child: a SIGALRM there ends it should the parent never kill it
        signal.alarm(120)
        threading.Event().wait()

    real_child = optimizer_services.Child

    def child(fn):
        children.append(real_child(fn))
        return children[-1]

    monkeypatch.setattr(optimizer_services._FrontierJob, "_in_child", hangs)
    monkeypatch.setattr(optimizer_services, "Child", child)
    settings.FINALIZE_CHILD_TIMEOUT_SECONDS = 0.5
    assert _finalized(provider_a, settings, fork_min_sims=0) == here
    (hung,) = children
    assert hung.pid is None, "killed and reaped"
    assert "did not report in time" in caplog.text, "given up on at its deadline (not when it ended by itself)"


def test_no_fork_now_computes_the_frontier_here(provider_a, settings, monkeypatch):
    """fork() refused (no memory, a process limit): the frontier is computed here, nothing of the answer lost."""
    fleet_seed(provider=provider_a, groups=2, sims_per_group=8, seed=4)
    here = _finalized(provider_a, settings, fork_min_sims=10**9)

    def no_fork():
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    assert _finalized(provider_a, settings, fork_min_sims=0) == here


@pytest.mark.parametrize("fork_min_sims", [0, 10**9])
def test_a_frontier_failing_after_its_ranks_leaves_no_rank_and_no_frontier(provider_a, settings, monkeypatch,
                                                                           fork_min_sims):
    fleet_seed(provider=provider_a, groups=2, sims_per_group=8, seed=4)
    real = engine.frontier

    def fails_late(problem, **kwargs):
        fr = real(problem, **{**kwargs, "on_rank": None})
        if kwargs.get("on_rank") is not None:
            kwargs["on_rank"](fr.rank)
        raise RuntimeError("bounds trouble")

    monkeypatch.setattr(engine, "frontier", fails_late)
    totals, frontier, rows = _finalized(provider_a, settings, fork_min_sims=fork_min_sims)
    assert frontier == {} and totals.changed and all(r[9] is None for r in rows)


def test_a_rank_for_a_row_written_before_the_order_fails_the_finalize(provider_a, settings, monkeypatch):
    """The rows written before the order of moves is known are those engine.never_ranked leaves out: should the
    order rank one of them, finalize fails (in its transaction: nothing is kept) rather than store it unranked."""
    fleet_seed(provider=provider_a, groups=1, sims_per_group=8, seed=4)
    real = engine.frontier

    def ranks_everyone(problem, **kwargs):
        fr = real(problem, **{**kwargs, "on_rank": None})
        if kwargs.get("on_rank") is not None:
            kwargs["on_rank"](np.arange(problem.n_sims))
        return fr

    monkeypatch.setattr(engine, "frontier", ranks_everyone)
    with pytest.raises(RuntimeError, match="never_ranked"):
        _finalized(provider_a, settings, fork_min_sims=0)


@pytest.mark.django_db(transaction=True)
def test_assignments_vacuum_runs_outside_transactions_on_postgresql():
    """The workbench's deep pages read the index only once the run's rows are vacuumed: after a session completes,
    outside its transactions (VACUUM cannot run inside one: it is skipped there, not an error)."""
    with transaction.atomic():
        assert optimizer_services.assignments_vacuum() is False
    assert optimizer_services.assignments_vacuum() is (connection.vendor == "postgresql")


@pytest.mark.django_db
def test_list_indexes_hold_the_changed_flag_on_postgresql():
    """A deep page of the changes (by ICCID or by saving) is an index-only scan: the two ordering indexes INCLUDE
    changed (migration 0017); SQLite has no INCLUDE."""
    if connection.vendor != "postgresql":
        pytest.skip("INCLUDE is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname = ANY(%s)",
                       [DeviceAssignment._meta.db_table, ["assignment_run_iccid", "assignment_run_saving"]])
        defs = dict(cursor.fetchall())
    assert set(defs) == {"assignment_run_iccid", "assignment_run_saving"}
    assert all(d.endswith("INCLUDE (changed)") for d in defs.values()), defs
