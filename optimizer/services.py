"""Writes for the optimizer: the run, groups, catalogue validation, work items, results and the winners."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from time import monotonic, perf_counter

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from carrieropt.bulk import copy_text, rows_insert, text_rows_insert
from carrieropt.errors import ApplicationError
from carrieropt.forked import Child, ChildFailed, fork_available
from carrieropt.money import money_shares, to_money
from carrieropt.options import Pooling
from optimizer import engine
from optimizer.models import (
    QUEUE_ENDED,
    RUN_ENDED,
    CommGroup,
    DeviceAssignment,
    GroupStatus,
    KeptReason,
    Method,
    OptimizationQueue,
    OptimizationResult,
    OptimizationRun,
    QueueStatus,
    RunStatus,
)
from optimizer.pools import Scope, pool_scopes, scope_fingerprint, scope_problem
from optimizer.selectors import (
    GroupData,
    KeptWithoutPlan,
    catalogue_from_plans,
    foreign_plan_refusal,
    group_data,
    group_devices,
    kept_without_plan,
    on_foreign_plans,
    run_devices,
)
from rateplans.models import BillingPeriod, CommunicationPlan, PortalType, ServiceProvider

log = logging.getLogger(__name__)

INVALID_CATALOGUE = "One or more Rate Plans have invalid Data per Overage Charge or Overage Rate"
NO_GROUPS = "No Comm Groups and/or Rate Plans for this Instance"


class CatalogueInvalid(ApplicationError):
    code = "invalid_catalogue"


class NothingToOptimize(ApplicationError):
    code = "nothing_to_optimize"


@dataclass(frozen=True)
class GroupingOutcome:
    groups: list[CommGroup]
    skipped_plan_limit: list[CommGroup]
    skipped_no_plans: list[CommunicationPlan]


def run_create(*, provider: ServiceProvider, billing_period: BillingPeriod, method: str,
               charge_type: str = "both", must_beat_current: bool = False, customer=None) -> OptimizationRun:
    """A run of the account's SIMs, or (customer) of that customer's SIMs on the account only."""
    return OptimizationRun.objects.create(provider=provider, billing_period=billing_period, method=method,
                                          charge_type=charge_type, must_beat_current=must_beat_current,
                                          customer=customer)


def run_start(*, run: OptimizationRun) -> None:
    """The run begins (legacy: CommGroupSetup)."""
    OptimizationRun.objects.filter(pk=run.pk, status=RunStatus.NOT_STARTED).update(
        status=RunStatus.COMM_GROUP_SETUP, started_at=timezone.now())


def run_stop(*, run_id: int) -> None:
    """The run ends without an answer (its session failed or was cancelled)."""
    OptimizationRun.objects.filter(pk=run_id).exclude(status__in=RUN_ENDED).update(
        status=RunStatus.COMPLETE_WITH_ERRORS, finished_at=timezone.now())


def _run_status(run: OptimizationRun, status: str, **fields) -> None:
    run.status = status
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=["status", *fields])


def comm_groups_build(*, run: OptimizationRun) -> GroupingOutcome:
    """Group communication plans by the SET of rate plans they allow and validate the catalogue.

    Idempotent: a second run of it for the same optimization run finds the groups it made.
    """
    provider, method = run.provider, run.method
    by_key: dict[str, list[CommunicationPlan]] = {}
    plans_of: dict[str, list] = {}
    empty = []
    for comm in CommunicationPlan.objects.filter(provider=provider).prefetch_related("rate_plans").order_by("name"):
        plans = sorted((p for p in comm.rate_plans.all() if p.active), key=lambda p: p.pk)
        if not plans:
            empty.append(comm)
            continue
        key = ",".join(str(p.pk) for p in plans)
        by_key.setdefault(key, []).append(comm)
        plans_of[key] = plans
    if not by_key:
        raise NothingToOptimize(NO_GROUPS)

    bad = sorted({p.code for plans in plans_of.values() for p in plans if p.catalogue_problems})
    if bad:
        raise CatalogueInvalid(f"{INVALID_CATALOGUE}: {', '.join(bad)}", field="rate_plans", extra={"rate_plans": bad})

    limit = settings.LEGACY_MAX_PLANS if method == Method.LEGACY else settings.CERTIFIED_MAX_PLANS
    groups, over_limit = [], []
    # Deterministic names: groups ordered by their plan set.
    for n, key in enumerate(sorted(by_key), start=1):
        group, created = CommGroup.objects.get_or_create(run=run, plan_key=key, defaults={"name": f"G{n}"})
        if created:
            group.communication_plans.set(by_key[key])
            group.rate_plans.set(plans_of[key])
        group.device_count = group_devices(group=group).count()
        homeless = kept_without_plan(group=group)
        if homeless:
            raise KeptWithoutPlan(
                f"{len(homeless)} SIM(s) must keep their rate plan (pinned, or deactivated this cycle) but have no "
                f"current rate plan in the catalogue: {', '.join(homeless[:20])}{' …' if len(homeless) > 20 else ''}; "
                f"add the plan or unpin the SIM", field="rate_plan", extra={"iccids": homeless})
        foreign_iccids, foreign_plans = on_foreign_plans(group=group)
        if foreign_iccids:
            raise foreign_plan_refusal(iccids=foreign_iccids, plans=foreign_plans)
        if len(plans_of[key]) > limit:
            group.status = GroupStatus.SKIPPED_PLAN_LIMIT
            group.note = f"{len(plans_of[key])} rate plans; the limit for the {method} method is {limit}."
            over_limit.append(group)
        elif group.device_count <= 1:
            group.status = GroupStatus.KEPT_BASELINE
        group.save(update_fields=["device_count", "status", "note"])
        groups.append(group)
    return GroupingOutcome(groups=groups, skipped_plan_limit=over_limit, skipped_no_plans=empty)


def work_items_create(*, run: OptimizationRun) -> list[int]:
    """One certified work item per group; legacy: one per batch of rate pool sequences.

    Returns the work items still to run (all of them the first time; idempotent)."""
    if not run.queues.exists():
        _work_items_make(run)
    if run.status in (RunStatus.NOT_STARTED, RunStatus.COMM_GROUP_SETUP):
        _run_status(run, RunStatus.RUNNING_PERMUTATIONS)
    return list(run.queues.filter(status=QueueStatus.NOT_STARTED).values_list("pk", flat=True))


def _shared_scopes(run: OptimizationRun) -> dict[int, list[CommGroup]]:
    """Groups whose SIMs share pools with another group's (the account pools per customer or account-wide):
    each group's id -> its scope, the groups in id order. Groups alone in their scope are absent."""
    if run.provider.pooling == Pooling.GROUP:
        return {}
    groups = list(run.comm_groups.exclude(status__in=[GroupStatus.SKIPPED_NO_PLANS, GroupStatus.INVALID,
                                                       GroupStatus.SKIPPED_PLAN_LIMIT]).order_by("pk"))
    return {g.pk: scope for scope in pool_scopes(pooling=run.provider.pooling, groups=groups) if len(scope) > 1
            for g in scope}


def _work_items_make(run: OptimizationRun) -> None:
    method = run.method
    items = []
    # Certified: groups sharing pools are solved together, by one item on the first group of theirs with work.
    shared = _shared_scopes(run) if method == Method.CERTIFIED else {}
    for group in run.comm_groups.filter(status=GroupStatus.READY).order_by("pk"):
        if group.pk in shared:
            scope = shared[group.pk]
            if next(g for g in scope if g.status == GroupStatus.READY).pk == group.pk:
                items.append(OptimizationQueue(run=run, comm_group=group, method=method,
                                               scope=[group.pk] + [g.pk for g in scope if g.pk != group.pk]))
            continue
        if method == Method.LEGACY:
            plans = list(group.rate_plans.order_by("pk"))
            catalogue = catalogue_from_plans(plans)
            sequences = engine.rate_pool_sequences(list(range(len(plans))), catalogue, limit=settings.LEGACY_MAX_SEQUENCES)
            codes = [[plans[i].code for i in seq] for seq in sequences]
            step = settings.LEGACY_SEQUENCES_PER_ITEM
            items += [OptimizationQueue(run=run, comm_group=group, method=method, sequences=codes[i:i + step])
                      for i in range(0, len(codes), step)]
        else:
            items.append(OptimizationQueue(run=run, comm_group=group, method=method))
    OptimizationQueue.objects.bulk_create(items)


def work_item_claim(*, queue_id: int, worker: str) -> bool:
    """Compare-and-set: only one delivery of a work item gets to run it."""
    now = timezone.now()
    return OptimizationQueue.objects.filter(pk=queue_id, status=QueueStatus.NOT_STARTED).update(
        status=QueueStatus.RUNNING, claimed_by=worker, attempts=F("attempts") + 1, started_at=now,
        lease_expires_at=now + timezone.timedelta(seconds=settings.WORK_LEASE_SECONDS),
    ) == 1


def _assignment_blob(data: GroupData, assignment: np.ndarray) -> bytes:
    return data.plan_ids[assignment].astype("<i8").tobytes()


def work_item_run(*, queue_id: int, worker: str) -> bool:
    """Run a claimed work item and store its result. Returns False if it was not ours to run."""
    if not work_item_claim(queue_id=queue_id, worker=worker):
        return False
    item = OptimizationQueue.objects.select_related("comm_group__run__provider", "comm_group__run__billing_period__provider").get(pk=queue_id)
    if item.scope:
        return _scope_item_run(item, worker)
    try:
        data = group_data(group=item.comm_group, charge_type=item.comm_group.run.charge_type)
        if item.method == Method.LEGACY:
            index_of = {p.code: i for i, p in enumerate(data.plans)}
            sequences = [[index_of[c] for c in seq] for seq in item.sequences]
            # Mobility accounts: the legacy took SIMs one by one only, never by communication plan.
            mobility = item.comm_group.run.provider.portal_type == PortalType.MOBILITY
            cost, group_assignment, strategy = engine.legacy_evaluate_sequences(
                data.problem, 0, sequences, groupings=engine.NO_GROUPING if mobility else None)
            bound = None
        else:
            solution = engine.solve_certified(data.problem)
            group_assignment, cost, bound, strategy = solution.assignment, solution.total_cost, solution.lower_bound, "certified"
    except Exception as exc:  # noqa: BLE001 — any failure ends this item visibly, not the worker
        log.exception("work item %s failed", queue_id)
        OptimizationQueue.objects.filter(pk=queue_id, status=QueueStatus.RUNNING, claimed_by=worker).update(
            status=QueueStatus.ERRORS, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}")
        return True
    with transaction.atomic():
        # If the lease was taken from us (we were presumed dead), our result is discarded.
        mine = OptimizationQueue.objects.select_for_update().filter(pk=queue_id, status=QueueStatus.RUNNING, claimed_by=worker)
        if not mine.exists():
            return False
        OptimizationResult.objects.create(
            queue=item, comm_group=item.comm_group, method=item.method, cost=to_money(cost), snapshot=data.fingerprint,
            lower_bound=None if bound is None else to_money(bound), strategy=str(strategy)[:500],
            assignment=_assignment_blob(data, np.asarray(group_assignment)),
        )
        mine.update(status=QueueStatus.SUCCESS, finished_at=timezone.now())
    return True


def _scope_groups(item: OptimizationQueue) -> list[CommGroup]:
    """The groups of a scope item, in id order (its results are stored on the first of them)."""
    run = item.comm_group.run
    by_pk = {g.pk: g for g in CommGroup.objects.filter(pk__in=item.scope)}
    for g in by_pk.values():
        g.run = run
    return [by_pk[pk] for pk in sorted(item.scope)]


def _scope_item_run(item: OptimizationQueue, worker: str) -> bool:
    """A certified item over groups that share pools: one problem, one result on the scope's first group."""
    try:
        groups = _scope_groups(item)
        datas = [group_data(group=g, charge_type=item.comm_group.run.charge_type) for g in groups]
        scope = scope_problem(datas)
        solution = engine.solve_certified(scope.problem)
    except Exception as exc:  # noqa: BLE001 — any failure ends this item visibly, not the worker
        log.exception("work item %s failed", item.pk)
        OptimizationQueue.objects.filter(pk=item.pk, status=QueueStatus.RUNNING, claimed_by=worker).update(
            status=QueueStatus.ERRORS, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}")
        return True
    with transaction.atomic():
        mine = OptimizationQueue.objects.select_for_update().filter(pk=item.pk, status=QueueStatus.RUNNING, claimed_by=worker)
        if not mine.exists():
            return False
        OptimizationResult.objects.create(
            queue=item, comm_group=groups[0], method=item.method, cost=to_money(solution.total_cost),
            snapshot=scope_fingerprint(datas, groups), lower_bound=to_money(solution.lower_bound),
            strategy=f"certified, pools shared by {', '.join(g.name for g in groups)}"[:500],
            assignment=scope.blob(solution.assignment))
        mine.update(status=QueueStatus.SUCCESS, finished_at=timezone.now())
    return True


def work_progress(*, run: OptimizationRun) -> tuple[int, int]:
    """(ended, total) work items of a run."""
    total = run.queues.count()
    ended = run.queues.filter(status__in=QUEUE_ENDED).count()
    return ended, total


def work_items_expired(*, now=None):
    now = now or timezone.now()
    return OptimizationQueue.objects.filter(status=QueueStatus.RUNNING, lease_expires_at__lt=now)


def work_item_release(*, queue_id: int, max_attempts: int) -> str | None:
    """Watchdog: give an expired lease back (or end the item after too many attempts)."""
    now = timezone.now()
    expired = OptimizationQueue.objects.filter(pk=queue_id, status=QueueStatus.RUNNING, lease_expires_at__lt=now)
    if expired.filter(attempts__gte=max_attempts).update(
            status=QueueStatus.ERRORS, finished_at=now, error=f"Lease expired {max_attempts} times; giving up."):
        return "failed"
    if expired.update(status=QueueStatus.NOT_STARTED, claimed_by="", lease_expires_at=None):
        return "requeued"
    return None


@dataclass(frozen=True)
class Totals:
    devices: int
    current_cost: Decimal | None
    baseline_cost: Decimal
    optimized_cost: Decimal
    lower_bound: Decimal | None
    changed: int
    covered: int = 0  # SIMs priced with usage of the cycle
    no_usage_iccids: list[str] = field(default_factory=list)  # SIMs kept on their plan: no usage of the cycle
    # What results_finalize stores as run.frontier (its seconds differ from run to run: not compared).
    frontier: dict = field(default_factory=dict, compare=False)

    @property
    def no_usage(self) -> int:
        return len(self.no_usage_iccids)


def _to_indices(data: GroupData, blob: bytes) -> np.ndarray:
    plan_ids = np.frombuffer(blob, dtype="<i8")
    order = np.argsort(data.plan_ids)
    return order[np.searchsorted(data.plan_ids[order], plan_ids)].astype(np.int32)


def assignments_vacuum() -> bool:
    """VACUUM the per-SIM assignments after a run's rows committed (PostgreSQL, outside any transaction), so the
    workbench's deep pages are index-only scans: they skip the table only on pages the visibility map marks
    all-visible, and a million fresh rows are none (page 10,000 of the changes by saving: 506 ms before, 117 ms
    after; the VACUUM 0.2-0.3 s), and ANALYZE them (finalize's own ANALYZE skips the table while another
    session's VACUUM holds it). Skipped when a vacuum holds the table already (autovacuum is on it). Pages become
    all-visible only once no older transaction is open: rows committed beside another run's finalize are
    marked by that run's VACUUM, after its commit. Whether it was asked for."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE, SKIP_LOCKED) {DeviceAssignment._meta.db_table}")
    return True


def results_finalize(*, run: OptimizationRun, heartbeat: Callable[[], None] | None = None,
                     max_changes: int | None = None) -> Totals:
    """Keep each group's cheapest result (baseline and current plans compete too), write the
    per-SIM assignments and group figures, delete the losing results. Idempotent.

    Everything is priced on the group's data as it is now. A work item's result computed on
    other data (a sync ran in between) is discarded; in a certified session a group left
    without a certified result on this data (that, a failed item, or a 0-1 SIM group) is
    solved here, so every group's bound covers exactly what is priced.

    The run goes CleaningUp -> CompleteWithSuccess in the caller's transaction. The savings-versus-changes
    frontier over every group is stored on the run (max_changes, when given, is one of its budgets) and each
    changed SIM's row has its change_rank."""
    _run_status(run, RunStatus.CLEANING_UP)
    timings: dict[str, float] = {}
    totals = _results_finalize(run, heartbeat, max_changes, timings=timings)
    started = perf_counter()
    if connection.vendor == "postgresql":
        # Up to a million fresh rows: the planner needs their statistics before the first page is asked for.
        # SKIP_LOCKED: never wait (in this transaction) for another session's VACUUM of the table
        # (assignments_vacuum); that one's ANALYZE, after its commit, then covers these rows too.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE (SKIP_LOCKED) {DeviceAssignment._meta.db_table}")
    timings["analyze"] = perf_counter() - started
    log.info("run %s finalized (%d SIMs): %s", run.pk, totals.devices,
             ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in timings.items()))
    _run_status(run, RunStatus.COMPLETE_WITH_SUCCESS, finished_at=timezone.now(), frontier=totals.frontier)
    return totals


@dataclass
class _Pending:
    """A group's answer whose rows wait for the frontier (which ranks every SIM's move)."""

    group: CommGroup
    data: GroupData
    assignment: np.ndarray
    bound: float | None  # the group's proven bound on its SIMs with usage (None: legacy)
    insert: dict
    # Per SIM with usage: its pool key when pools are not the group's (data.pool_key), else None.
    pool: np.ndarray | None = None


def _frontier(run: OptimizationRun, parts: list[_Pending], *, fixed_total: float,
              max_changes: int | None, on_ranks: Callable[[list[np.ndarray]], None] | None = None,
              ) -> tuple[dict, list[np.ndarray]]:
    """The run's savings-versus-changes frontier over all its groups (engine.frontier on one problem made of
    the groups' problems), as stored in run.frontier, and each group's change rank per SIM (-1: no move).

    Money includes what the SIMs without usage cost (fixed_total), as the group figures do. on_ranks, when
    given, gets the ranks as soon as they are known (before the frontier's points and bounds)."""
    parts_with_sims = [p for p in parts if p.data.problem.n_sims]
    if not parts_with_sims:
        return {}, [np.full(p.data.problem.n_sims, -1, dtype=np.int64) for p in parts]
    started = perf_counter()
    plans = {}
    for p in parts_with_sims:
        for plan in p.data.plans:
            plans.setdefault(plan.pk, plan)
    pks = sorted(plans)
    where = {pk: i for i, pk in enumerate(pks)}
    G = len(parts_with_sims)
    allowed = np.zeros((G, len(pks)), dtype=bool)
    usage, group, current, answer, factor, movable = [], [], [], [], [], []
    for g, p in enumerate(parts_with_sims):
        pr = p.data.problem
        to_union = np.array([where[int(pk)] for pk in p.data.plan_ids] + [-1], dtype=np.int64)
        allowed[g, to_union[np.flatnonzero(pr.allowed[0])]] = True
        usage.append(pr.usage_mb)
        group.append(np.full(pr.n_sims, g, dtype=np.int32))
        current.append(to_union[pr.current_plan])  # -1 indexes the trailing -1: no current plan
        answer.append(to_union[p.assignment.astype(np.int64)])
        factor.append(pr.factors)
        movable.append(pr.movable_mask)
    first = parts_with_sims[0].data.problem
    prorated = any(p.data.problem.factor is not None for p in parts_with_sims)
    movable_all = np.concatenate(movable)
    # Pools of the account's rule (a group without keys is its own pool: a key no other group has).
    pool = None if all(p.pool is None for p in parts_with_sims) else np.concatenate(
        [p.pool if p.pool is not None else np.full(p.data.problem.n_sims, -p.group.pk, dtype=np.int64)
         for p in parts_with_sims])
    problem = engine.Problem(
        catalogue=catalogue_from_plans([plans[pk] for pk in pks]), usage_mb=np.concatenate(usage),
        group=np.concatenate(group), allowed=allowed, billing=first.billing, charge_type=first.charge_type,
        current_plan=np.concatenate(current).astype(np.int32), factor=np.concatenate(factor) if prorated else None,
        movable=None if movable_all.all() else movable_all, pool=pool)
    assignment = np.concatenate(answer).astype(np.int32)
    pr = engine.price(problem, assignment)
    bounds = [p.bound for p in parts_with_sims]
    reference = engine.Solution(
        assignment=assignment, total_cost=pr.total,
        lower_bound=None if any(b is None for b in bounds) else float(sum(bounds)), group_cost=pr.per_group,
        group_bound=None, method=run.method, seconds=0.0, changes=int((assignment != problem.current_plan).sum()))
    fr = engine.frontier(problem, points=int(settings.FRONTIER_POINTS), reference=reference,
                         extra_budgets=() if max_changes is None else (int(max_changes),),
                         on_rank=None if on_ranks is None else lambda rank: on_ranks(_split_ranks(parts, rank)))
    stored = {
        "points": [{"max_changes": pt.max_changes, "changes": pt.changes,
                    "total_cost": str(to_money(pt.total_cost + fixed_total)),
                    "lower_bound": str(to_money(pt.lower_bound + fixed_total))} for pt in fr.points],
        "forced": fr.forced,
        "unconstrained_changes": reference.changes,
        "seconds": round(perf_counter() - started, 3),
    }
    return stored, _split_ranks(parts, fr.rank)


def _split_ranks(parts: list[_Pending], rank: np.ndarray) -> list[np.ndarray]:
    """The frontier's rank per SIM of all groups, cut into each group's."""
    ranks, at = [], 0
    for p in parts:
        n = p.data.problem.n_sims
        ranks.append(rank[at : at + n] if n else np.full(0, -1, dtype=np.int64))
        at += n
    return ranks


def _results_finalize(run: OptimizationRun, heartbeat: Callable[[], None] | None,
                      max_changes: int | None = None, *, timings: dict[str, float] | None = None) -> Totals:
    timings = {} if timings is None else timings
    started = perf_counter()
    # The account and cycle (time zone, proration) are read by every group: once, here.
    run = OptimizationRun.objects.select_related("provider", "billing_period__provider").get(pk=run.pk)
    method = run.method
    # Items that never ended by now are ended as errors so nothing hangs in RUNNING.
    run.queues.exclude(status__in=QUEUE_ENDED).update(
        status=QueueStatus.ERRORS, finished_at=timezone.now(), error="Not finished when the run was finalized.")
    DeviceAssignment.objects.filter(run=run).delete()
    # The run's figures are sums of the groups' stored (rounded) figures, so groups add up to the run exactly.
    zero = Decimal(0)
    sums = {"devices": 0, "current": zero, "current_known": True, "baseline": zero, "optimized": zero, "bound": zero,
            "bound_known": True, "changed": 0, "covered": 0, "no_usage_iccids": [], "fixed": 0.0}
    pending: list[_Pending] = []
    shared = _shared_scopes(run)  # groups sharing pools: finalized together, after the others
    for group in run.comm_groups.exclude(status__in=[GroupStatus.SKIPPED_NO_PLANS, GroupStatus.INVALID]).order_by("pk"):
        if heartbeat is not None:
            heartbeat()
        if group.status == GroupStatus.SKIPPED_PLAN_LIMIT:
            continue  # legacy rule: no assignment is computed for a group over the plan limit
        if group.pk in shared:
            continue
        data = group_data(group=group, charge_type=run.charge_type)
        problem = data.problem
        n = len(data.device_ids)
        sums["no_usage_iccids"] += data.missing_iccids
        if n == 0:
            group.status = GroupStatus.KEPT_BASELINE if group.status == GroupStatus.READY else group.status
            if data.sims:
                _missing_only(run=run, group=group, data=data, sums=sums)
            group.save()
            continue
        current_known = bool((problem.current_plan >= 0).all())
        # Every candidate is priced by the same cost model here, whatever the work item reported;
        # choose_winner puts the current plans first (when they compete) so a tie keeps SIMs where they are.
        candidates = [engine.Candidate(np.asarray(engine.baseline_assignment(problem), dtype=np.int32), "baseline",
                                       "legacy baseline (closest included MB)")]
        fingerprint = data.fingerprint
        stale = group.results.exclude(snapshot=fingerprint)
        if stale.exists():
            log.warning("group %s: %d result(s) computed on other data (a sync ran meanwhile) discarded",
                        group.pk, stale.count())
            stale.delete()
        bounds = [float(r.lower_bound) for r in group.results.all() if r.lower_bound is not None]
        for result in group.results.order_by("pk"):
            candidates.append(engine.Candidate(_to_indices(data, bytes(result.assignment)), result.method,
                                               result.strategy, ref=result.pk))
        if method == Method.CERTIFIED and not bounds:
            solution = engine.solve_certified(problem)
            bounds.append(solution.lower_bound)
            candidates.append(engine.Candidate(solution.assignment.astype(np.int32), "certified", "certified (at finalize)"))
        winner = engine.choose_winner(
            candidates,
            current=engine.Candidate(problem.current_plan.astype(np.int32), "current", "keep current plans"),
            allowed_plans=np.flatnonzero(problem.allowed[0]),
            price=lambda assignment, problem=problem: engine.price(problem, assignment).total,
        )
        cost, assignment = winner.cost, winner.candidate.assignment
        method_won, strategy, winner_pk = winner.candidate.method, winner.candidate.strategy, winner.candidate.ref
        baseline_total = winner.costs[0]
        current_total = winner.current_cost
        if current_total is None and current_known:
            current_total = engine.price(problem, problem.current_plan).total
        note = ""
        if run.must_beat_current and not winner.kept_current:
            if current_total is None:
                unknown = int((problem.current_plan < 0).sum())
                note = (f"Must beat current plans: not checked, {unknown} SIM(s) have no current plan, "
                        "so the current cost is unknown.")
            elif not to_money(cost) < to_money(current_total):  # as stored: a saving under 0.0001 is none
                # Current plans outside the allowed set did not compete; the option makes them the answer
                # unless something is strictly cheaper. The answers considered now include them, so the
                # bound is the lower of the two.
                note = (f"Kept current plans: optimized cost {cost:.2f} is not below the current {current_total:.2f} "
                        "(must beat current plans).")
                assignment, cost = problem.current_plan.astype(np.int32), current_total
                method_won, strategy, winner_pk = "current", "keep current plans (must beat current)", None
                bounds = [min(max(bounds), current_total)] if bounds else bounds

        recommended_costs = engine.sim_costs(problem, assignment)
        current_costs = engine.sim_costs(problem, problem.current_plan) if current_known else None
        # SIMs without usage stay where they are, each priced at its plan's fixed charge on both sides:
        # the same amount is added to every figure, so no saving (and no bound) ever comes from them.
        fixed = data.missing_fixed_charges()
        priced = ~np.isnan(fixed)
        fixed_total = float(fixed[priced].sum())
        if current_total is not None and not priced.all():
            current_total = None  # a SIM without usage and without a current plan: its cost is unknown
        if current_total is None:
            current_costs = None
        pending.append(_Pending(group=group, data=data, assignment=np.asarray(assignment),
                                bound=max(bounds) if bounds else None,
                                insert={"recommended_costs": recommended_costs, "current_costs": current_costs,
                                        "recommended_total": cost + fixed_total,
                                        "current_total": None if current_total is None else current_total + fixed_total},
                                pool=data.pool_key))
        sums["fixed"] += fixed_total
        group.results.exclude(pk=winner_pk).delete()
        group.current_cost = to_money(current_total + fixed_total) if current_total is not None else None
        group.baseline_cost = to_money(baseline_total + fixed_total)
        group.optimized_cost = to_money(cost + fixed_total)
        group.lower_bound = to_money(max(bounds) + fixed_total) if bounds else None
        group.winning_method = method_won
        group.winning_strategy = str(strategy)[:500]
        if note and note not in group.note:  # finalize may run again: say it once
            group.note = f"{group.note} {note}".strip()
        if group.status == GroupStatus.READY or (group.status == GroupStatus.KEPT_BASELINE
                                                 and method_won not in ("baseline", "current")):
            group.status = GroupStatus.OPTIMIZED
        group.save()

        sums["covered"] += n
        sums["changed"] += int((problem.current_plan != assignment).sum())
        _sums_add(sums, group, sims=data.sims)
    for scope in {tuple(g.pk for g in scope): scope for scope in shared.values()}.values():
        _scope_finalize(run, scope, sums=sums, pending=pending, heartbeat=heartbeat)
    timings["groups"] = perf_counter() - started
    # The frontier spans every group (the budget is the run's), so its order of moves is known only now:
    # each SIM's rank goes into its row. At scale it is computed by a child process while this one builds
    # the rows and then, once the order is known, writes them as the child computes the points and bounds.
    with _FrontierJob(run, pending, fixed_total=sums["fixed"], max_changes=max_changes) as job:
        started = perf_counter()
        rows = []
        for part in pending:
            if heartbeat is not None:
                heartbeat()
            rows.append(_AssignmentRows(run=run, group=part.group, data=part.data, assignment=part.assignment,
                                        unranked=engine.never_ranked(part.data.problem, part.assignment),
                                        **part.insert))
        timings["rows_built"] = perf_counter() - started
        started = perf_counter()
        # The rows no order of moves ranks (SIMs that stay, or cannot move; those without usage) do not wait for it.
        _rows_write(rows, unranked=True)
        timings["rows_unranked"] = perf_counter() - started
        started = perf_counter()
        ranks = job.ranks(heartbeat)
        timings["frontier"] = perf_counter() - started
        started = perf_counter()
        if heartbeat is not None:
            heartbeat()
        _rows_write(rows, unranked=False, ranks=ranks)
        del rows
        timings["rows"] = perf_counter() - started
        started = perf_counter()
        frontier = job.result(heartbeat)
        timings["frontier"] += perf_counter() - started
    if job.forked and frontier:
        timings["frontier_child"] = frontier["seconds"]  # its own time, beside the rows
    if not frontier and any(r is not None for r in ranks):
        # The order came before the frontier failed: its rows are stored as they would have been without it.
        DeviceAssignment.objects.filter(run=run, change_rank__isnull=False).update(change_rank=None)
    return Totals(
        devices=sums["devices"],
        current_cost=sums["current"] if sums["current_known"] else None,
        baseline_cost=sums["baseline"],
        optimized_cost=sums["optimized"],
        lower_bound=sums["bound"] if sums["bound_known"] else None,
        changed=sums["changed"],
        covered=sums["covered"],
        no_usage_iccids=sorted(sums["no_usage_iccids"]),
        frontier=frontier,
    )


class _FrontierJob:
    """_frontier of a finalize, in a forked child when the run is big enough (FINALIZE_FORK_MIN_SIMS), else here
    when its ranks are first asked for. The child reports the ranks as soon as it knows them, then the
    frontier; a child that fails or dies is replaced by computing here, so the outcome is the same either way
    (the frontier is deterministic): the frontier and ranks, or, when it fails, none of either (logged)."""

    def __init__(self, run: OptimizationRun, parts: list[_Pending], *, fixed_total: float, max_changes: int | None):
        self.run, self.parts, self.fixed_total, self.max_changes = run, parts, fixed_total, max_changes
        self.child, self._deadline = None, None
        self._ranks = self._frontier = None
        sims = sum(p.data.problem.n_sims for p in parts)
        self.forked = bool(sims) and sims >= settings.FINALIZE_FORK_MIN_SIMS and fork_available()
        if self.forked:
            try:
                self.child = Child(self._in_child)
                # A child that hangs is given up on (and killed) then: the frontier is computed here.
                self._deadline = monotonic() + settings.FINALIZE_CHILD_TIMEOUT_SECONDS
            except OSError as exc:  # no fork now (memory, a process limit): computed here when asked
                log.warning("run %s: no child process for the frontier (%s); computing it here", run.pk, exc)
                self.forked = False

    def _in_child(self, send) -> None:
        sent = []

        def early(ranks) -> None:
            send(ranks)
            sent.append(True)

        stored, ranks = _frontier(self.run, self.parts, fixed_total=self.fixed_total, max_changes=self.max_changes,
                                  on_ranks=early)
        if not sent:
            send(ranks)
        send(stored)

    def _here(self) -> None:
        try:
            self._frontier, self._ranks = _frontier(self.run, self.parts, fixed_total=self.fixed_total,
                                                    max_changes=self.max_changes)
        except Exception:  # noqa: BLE001 — the frontier is extra: its failure must not lose the run's answer
            log.exception("run %s: the savings-versus-changes frontier failed; the answer is stored without it",
                          self.run.pk)
            self._frontier, self._ranks = {}, [None] * len(self.parts)

    def _receive(self, heartbeat):
        return self.child.receive(wait=heartbeat, every=float(settings.STAGE_HEARTBEAT_SECONDS),
                                  deadline=self._deadline)

    def _child_failed(self, exc: ChildFailed) -> None:
        log.warning("run %s: the frontier's child process failed; computing it here: %s", self.run.pk, exc)
        self.child.close()
        self.child = None
        early = self._ranks
        self._here()
        if early is not None and self._frontier and not all(
                np.array_equal(a, b) for a, b in zip(early, self._ranks, strict=True)):
            raise RuntimeError(f"run {self.run.pk}: the frontier's ranks differ between the child and here")

    def ranks(self, heartbeat=None) -> list:
        """Each part's change rank per SIM (None: no frontier)."""
        if self._ranks is None:
            if self.child is None:
                self._here()
            else:
                try:
                    self._ranks = self._receive(heartbeat)
                except ChildFailed as exc:
                    self._child_failed(exc)
        return self._ranks

    def result(self, heartbeat=None) -> dict:
        """What run.frontier stores ({}: the frontier failed)."""
        self.ranks(heartbeat)
        if self._frontier is None:
            try:
                self._frontier = self._receive(heartbeat)
            except ChildFailed as exc:
                self._child_failed(exc)
        return self._frontier

    def __enter__(self) -> _FrontierJob:
        return self

    def __exit__(self, *exc) -> None:
        if self.child is not None:
            self.child.close()


def _scope_finalize(run: OptimizationRun, groups: list[CommGroup], *, sums: dict, pending: list,
                    heartbeat: Callable[[], None] | None) -> None:
    """Finalize groups whose SIMs share pools (optimizer.pools) as one problem, priced exactly as billed.

    The candidates are the baseline, the scope's certified results (stored on its first group) and, for
    the legacy method, each group's own results, taken group by group where they lower the scope's price;
    the current plans compete when every SIM's is allowed. Each group's cost is its share of the scope's
    (a shared pool's overage split by usage above allowance, as each SIM's row), and the proven bound is
    the scope's: the groups carry none, the run's bound adds the scope's once."""
    method = run.method
    datas = [group_data(group=g, charge_type=run.charge_type) for g in groups]
    fingerprint = scope_fingerprint(datas, groups)
    keep_snapshots = [{d.fingerprint} | ({fingerprint} if i == 0 else set()) for i, d in enumerate(datas)]
    for group, keep in zip(groups, keep_snapshots, strict=True):
        stale = group.results.exclude(snapshot__in=keep)
        if stale.exists():
            log.warning("group %s: %d result(s) computed on other data or pool scope discarded", group.pk, stale.count())
            stale.delete()
    scope_results = list(groups[0].results.filter(snapshot=fingerprint).order_by("pk"))
    members = []
    for group, data in zip(groups, datas, strict=True):
        sums["no_usage_iccids"] += data.missing_iccids
        if len(data.device_ids):
            members.append((group, data))
            continue
        group.status = GroupStatus.KEPT_BASELINE if group.status == GroupStatus.READY else group.status
        if data.sims:
            _missing_only(run=run, group=group, data=data, sums=sums)
        group.save()
    if not members:
        return
    scope: Scope = scope_problem([d for _, d in members])
    problem = scope.problem
    cur = problem.current_plan
    current_known = bool((cur >= 0).all())

    # Each assignment (the same array) is priced once: a scope can hold a million SIMs, and the current plans, the
    # baseline and the winner are each needed for the total and again per group.
    priced: dict[int, tuple[np.ndarray, object]] = {}  # id -> (the array, kept alive so its id is not reused; pricing)

    def pricing(assignment):
        if id(assignment) not in priced:
            priced[id(assignment)] = (assignment, engine.price(problem, assignment))
        return priced[id(assignment)][1]

    def price(assignment) -> float:
        return pricing(assignment).total

    cur32 = cur.astype(np.int32)
    base = np.asarray(engine.baseline_assignment(problem), dtype=np.int32)
    whole = [(base, "baseline", "legacy baseline (closest included MB)", None)]
    whole += [(scope.from_blob(bytes(r.assignment)), r.method, r.strategy, r.pk) for r in scope_results]
    bounds = [float(r.lower_bound) for r in scope_results if r.lower_bound is not None]
    if method == Method.CERTIFIED and not bounds:
        if heartbeat is not None:
            heartbeat()
        solution = engine.solve_certified(problem)
        bounds.append(solution.lower_bound)
        whole.append((solution.assignment.astype(np.int32), "certified", "certified (at finalize)", None))
    competes = current_known and bool(problem.allowed[problem.group, np.maximum(cur, 0)].all())
    field = ([(cur32, "current", "keep current plans", None)] if competes else []) + whole
    costs = [price(c[0]) for c in field]
    best = min(range(len(field)), key=costs.__getitem__)  # the first of the cheapest: current plans first
    assignment, cost = field[best][0], costs[best]
    kept_current = competes and best == 0
    won = [field[best][1:]] * len(members)  # (method, strategy, result pk) per group
    # A group's own results (legacy work items) replace its part where the scope gets strictly cheaper.
    for g, (group, data) in enumerate(members):
        for r in group.results.filter(snapshot=data.fingerprint).order_by("pk"):
            trial = scope.join(g, _to_indices(data, bytes(r.assignment)), assignment)
            trial_cost = price(trial)
            if trial_cost < cost:
                assignment, cost, won[g], kept_current = trial, trial_cost, (r.method, r.strategy, r.pk), False
    current_total = price(cur32) if current_known else None
    note = ""
    if run.must_beat_current and not kept_current:
        if current_total is None:
            note = (f"Must beat current plans: not checked, {int((cur < 0).sum())} SIM(s) of the pool scope have no "
                    "current plan, so the current cost is unknown.")
        elif not to_money(cost) < to_money(current_total):
            note = (f"Kept current plans: the pool scope's optimized cost {cost:.2f} is not below the current "
                    f"{current_total:.2f} (must beat current plans).")
            assignment, cost = cur32, current_total
            won = [("current", "keep current plans (must beat current)", None)] * len(members)
            bounds = [min(max(bounds), current_total)] if bounds else bounds
    keep = {w[2] for w in won if w[2] is not None}
    for group in groups:
        group.results.exclude(pk__in=keep).delete()

    per_group = pricing(assignment).per_group
    base_group = pricing(base).per_group
    current_group = pricing(cur32).per_group if current_known else None
    recommended_costs = engine.sim_costs(problem, assignment)
    current_costs = engine.sim_costs(problem, cur) if current_known else None
    names = ", ".join(g.name for g, _ in members)
    scope_fixed = 0.0
    for g, (group, data) in enumerate(members):
        if heartbeat is not None:
            heartbeat()
        part = slice(int(scope.starts[g]), int(scope.starts[g + 1]))
        local = scope.split(assignment, g)
        fixed = data.missing_fixed_charges()
        priced = ~np.isnan(fixed)
        fixed_total = float(fixed[priced].sum())
        scope_fixed += fixed_total
        group_current = None if current_group is None or not priced.all() else float(current_group[g])
        group_cost = float(per_group[g])
        pending.append(_Pending(
            group=group, data=data, assignment=local, pool=data.pool_key,
            # The scope's bound, once (the frontier adds the parts' bounds).
            bound=(max(bounds) if g == 0 else 0.0) if bounds else None,
            insert={"recommended_costs": recommended_costs[part],
                    "current_costs": None if group_current is None else current_costs[part],
                    "recommended_total": group_cost + fixed_total,
                    "current_total": None if group_current is None else group_current + fixed_total}))
        group.current_cost = None if group_current is None else to_money(group_current + fixed_total)
        group.baseline_cost = to_money(float(base_group[g]) + fixed_total)
        group.optimized_cost = to_money(group_cost + fixed_total)
        group.lower_bound = None
        group.winning_method, group.winning_strategy = won[g][0], str(won[g][1])[:500]
        scope_note = (f"Pools shared with the SIMs of {names} ({run.provider.get_pooling_display().lower()} pools): "
                      "solved together; the proven bound is the scope's, in the run's.")
        for text in (scope_note, note):
            if text and text not in group.note:  # finalize may run again: say it once
                group.note = f"{group.note} {text}".strip()
        if group.status == GroupStatus.READY or (group.status == GroupStatus.KEPT_BASELINE
                                                 and won[g][0] not in ("baseline", "current")):
            group.status = GroupStatus.OPTIMIZED
        group.save()
        sums["covered"] += len(data.device_ids)
        sums["changed"] += int((data.problem.current_plan != local).sum())
        _sums_add(sums, group, sims=data.sims, bound=False)
    sums["fixed"] += scope_fixed
    if bounds:
        sums["bound"] += to_money(max(bounds) + scope_fixed)
    else:
        sums["bound_known"] = False


def _missing_only(*, run: OptimizationRun, group: CommGroup, data: GroupData, sums: dict) -> None:
    """A group none of whose SIMs has usage: each stays on its plan at the fixed charge; nothing is solved."""
    fixed = data.missing_fixed_charges()
    priced = ~np.isnan(fixed)
    total = float(fixed[priced].sum())
    _AssignmentRows(run=run, group=group, data=data, assignment=np.zeros(0, np.int32),
                    recommended_costs=np.zeros(0), current_costs=np.zeros(0) if priced.all() else None,
                    recommended_total=total, current_total=total if priced.all() else None).write()
    group.current_cost = to_money(total) if priced.all() else None
    group.baseline_cost = group.optimized_cost = to_money(total)
    group.lower_bound = to_money(total) if run.method == Method.CERTIFIED else None
    group.winning_method, group.winning_strategy = "current", "no usage data: every SIM kept on its plan"
    _sums_add(sums, group, sims=data.sims)


def _sums_add(sums: dict, group: CommGroup, *, sims: int, bound: bool = True) -> None:
    """Add a group's stored (rounded) figures to the run's: the run's totals are their sums exactly.

    bound=False: the group's bound is its pool scope's, added once for the scope (_scope_finalize)."""
    sums["devices"] += sims
    if group.current_cost is None:
        sums["current_known"] = False
    else:
        sums["current"] += group.current_cost
    sums["baseline"] += group.baseline_cost
    sums["optimized"] += group.optimized_cost
    if not bound:
        return
    if group.lower_bound is not None:
        sums["bound"] += group.lower_bound
    else:
        sums["bound_known"] = False


ASSIGNMENT_COLUMNS = ["run_id", "comm_group_id", "device_id", "customer_id", "iccid", "usage_mb", "current_plan_id",
                      "recommended_plan_id", "current_cost", "recommended_cost", "changed", "kept_reason", "change_rank"]


def _rows_write(rows: list[_AssignmentRows], *, unranked: bool, ranks: list | None = None) -> int:
    """One insert of the parts' rows no order of moves ranks (unranked), or of the others with their ranks."""
    if ranks is None:
        ranks = [None] * len(rows)
    parts = [(r, r.selected(unranked=unranked, change_rank=rank)) for r, rank in zip(rows, ranks, strict=True)]
    table = DeviceAssignment._meta.db_table
    if connection.vendor == "postgresql":
        return text_rows_insert(table=table, columns=ASSIGNMENT_COLUMNS,
                                lines=(line for r, (picked, rank) in parts for line in r.lines(picked, rank)))
    return rows_insert(table=table, columns=ASSIGNMENT_COLUMNS,
                       rows=(row for r, (picked, rank) in parts for row in r.tuples(picked, rank)))


class _AssignmentRows:
    """One row per SIM, built from columns: at a million SIMs model instances would dominate finalize.

    Each SIM's cost is rounded so that the group's rows add up to exactly the group's stored cost.
    SIMs without usage (data.missing_*) follow the covered ones: usage unknown (NULL), kept on their
    plan at its fixed charge, never a change; one without a current plan has no row (nothing to keep).

    Built whole before they are written, without the change rank (the frontier's, known later): on PostgreSQL
    as the text COPY reads, each line but its last column."""

    def __init__(self, *, run: OptimizationRun, group, data: GroupData, assignment, recommended_costs, current_costs,
                 recommended_total: float, current_total: float | None, unranked: np.ndarray | None = None):
        fixed = data.missing_fixed_charges()
        keep = ~np.isnan(fixed)
        missing_ids = data.missing_ids[keep]
        missing_iccids = [c for c, ok in zip(data.missing_iccids, keep, strict=True) if ok]
        missing_plan = data.missing_current[keep]
        recommended_money = money_shares(np.concatenate([recommended_costs, fixed[keep]]), recommended_total)
        current_money = (None if current_costs is None
                         else money_shares(np.concatenate([current_costs, fixed[keep]]), current_total))
        plan_pk = data.plan_ids
        current = np.concatenate([data.problem.current_plan, missing_plan]).astype(np.int64)
        current_pk = np.where(current >= 0, plan_pk[np.maximum(current, 0)], -1).tolist()
        usage = data.problem.usage_mb.tolist()
        recommended_pk = plan_pk[np.concatenate([np.asarray(assignment, dtype=np.int64), missing_plan])].tolist()
        device_ids = np.concatenate([data.device_ids, missing_ids]).tolist()
        iccids = data.iccids + missing_iccids
        customer = [None if c < 0 else c for c in np.concatenate([data.customer_ids, data.missing_customer_ids[keep]]).tolist()]
        self.n_covered = n_covered = len(data.device_ids)
        kept = data.kept_reason.tolist() if len(data.kept_reason) == n_covered else [""] * n_covered
        if current_money is None:
            current_money = [None] * len(device_ids)
        self.text = connection.vendor == "postgresql"
        rows = []
        append = rows.append
        if self.text:
            head = f"{run.pk}\t{group.pk}\t"
            null = copy_text(None)
            texts = {}  # kept reasons, a few
            for i, device_id in enumerate(device_ids):
                cur, rec, cus, cm = current_pk[i], recommended_pk[i], customer[i], current_money[i]
                covered = i < n_covered
                reason = kept[i] if covered else KeptReason.NO_USAGE
                reason = texts.get(reason) or texts.setdefault(reason, copy_text(reason))
                iccid = iccids[i]
                if not iccid.isalnum():
                    iccid = copy_text(iccid)
                append(f"{head}{device_id}\t{null if cus is None else cus}\t{iccid}\t"
                       f"{f'{usage[i]:.3f}' if covered else null}\t{cur if cur >= 0 else null}\t{rec}\t"
                       f"{null if cm is None else cm}\t{copy_text(recommended_money[i])}\t"
                       f"{'t' if covered and cur != rec else 'f'}\t{reason}\t")
        else:
            for i, device_id in enumerate(device_ids):
                cur, rec = current_pk[i], recommended_pk[i]
                covered = i < n_covered
                append((run.pk, group.pk, device_id, customer[i], iccids[i],
                        f"{usage[i]:.3f}" if covered else None,
                        cur if cur >= 0 else None, rec, current_money[i], recommended_money[i],
                        covered and cur != rec, kept[i] if covered else KeptReason.NO_USAGE))
        self.rows = rows
        # Per row: whether no order of moves ranks it (as given for the covered SIMs, else maybe; those without
        # usage never move).
        self.unranked = np.ones(len(rows), dtype=bool)
        self.unranked[:n_covered] = False if unranked is None else unranked

    def selected(self, *, unranked: bool | None, change_rank=None) -> tuple[list[int], list]:
        """The rows to write (all, or those no order ranks, or the others) and each covered SIM's rank (None, or
        -1: it does not move). A rank for a row said to be unranked is an error: that row is written already."""
        n = len(self.rows)
        picked = (list(range(n)) if unranked is None
                  else np.flatnonzero(self.unranked == unranked).tolist())
        if change_rank is None:
            return picked, [None] * self.n_covered
        change_rank = np.asarray(change_rank)
        if (change_rank[self.unranked[: self.n_covered]] >= 0).any():
            raise RuntimeError("the frontier ranked a SIM it leaves out (engine.never_ranked)")
        return picked, [None if r < 0 else r for r in change_rank.tolist()]

    def lines(self, picked: list[int], rank: list):
        null, rows, n_covered = copy_text(None), self.rows, self.n_covered
        return (f"{rows[i]}{null if i >= n_covered or rank[i] is None else rank[i]}\n" for i in picked)

    def tuples(self, picked: list[int], rank: list):
        rows, n_covered = self.rows, self.n_covered
        return (rows[i] + (rank[i] if i < n_covered else None,) for i in picked)

    def write(self, *, change_rank=None) -> int:
        """Insert all the rows, each covered SIM with its change rank (None, or -1: it does not move)."""
        picked, rank = self.selected(unranked=None, change_rank=change_rank)
        table = DeviceAssignment._meta.db_table
        if self.text:
            return text_rows_insert(table=table, columns=ASSIGNMENT_COLUMNS, lines=self.lines(picked, rank))
        return rows_insert(table=table, columns=ASSIGNMENT_COLUMNS, rows=self.tuples(picked, rank))


def billable_device_count(*, run: OptimizationRun) -> int:
    """The SIMs the run should have given a plan: the account's billable SIMs (its customer's, for a customer run)."""
    return run_devices(run=run).count()

