"""Reads for the optimizer: a group's SIMs and catalogue as engine arrays."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db.models import Count, FloatField, Q, Sum
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone

from carrieropt.errors import ApplicationError
from carrieropt.money import MONEY_PLACES
from carrieropt.options import Pooling
from devices.models import STOPPED_STATUSES, Device, DeviceStatus, DeviceUsage, billed_in_cycle
from optimizer.engine import Billing, Catalogue, Problem
from optimizer.models import CommGroup, DeviceAssignment, KeptReason
from rateplans.models import RatePlan

# Only SIMs the carrier bills a rate plan for take part (devices.models.billed_in_cycle): every ACTIVATED
# SIM, and those deactivated or retired during the cycle, which keep their plan (they cannot move).
BILLABLE_STATUSES = (DeviceStatus.ACTIVATED, *STOPPED_STATUSES)


class KeptWithoutPlan(ApplicationError):
    code = "kept_without_plan"


class ForeignRatePlan(ApplicationError):
    """SIMs of one carrier account on another account's rate plan: a pool never mixes accounts' plans."""

    code = "foreign_rate_plan"


def foreign_plan_refusal(*, iccids: list[str], plans: list[str]) -> ForeignRatePlan:
    return ForeignRatePlan(
        f"{len(iccids)} SIM(s) are on a rate plan of another carrier account ({', '.join(sorted(set(plans)))}): "
        f"{', '.join(iccids[:20])}{' …' if len(iccids) > 20 else ''}; a pool never mixes plans of different "
        "accounts, so correct the SIMs' rate plan", field="rate_plan", extra={"iccids": iccids})


def on_foreign_plans(*, group: CommGroup) -> tuple[list[str], list[str]]:
    """(ICCIDs, plan codes) of the group's SIMs whose current rate plan belongs to another carrier account."""
    rows = (group_devices(group=group).filter(rate_plan__isnull=False).exclude(rate_plan__provider_id=group.run.provider_id)
            .order_by("iccid").values_list("iccid", "rate_plan__code"))
    return [r[0] for r in rows], [r[1] for r in rows]


@dataclass(frozen=True)
class GroupData:
    """A group's SIMs (ordered by device id) and the plans they may use or currently have.

    `problem` holds the SIMs with usage of the run's cycle (covered); a SIM without it is never
    handed to the engine (it would be priced as if it used nothing): it is listed in the
    `missing_*` arrays, stays on its current plan and is priced at that plan's fixed charge only.
    """

    problem: Problem
    device_ids: np.ndarray  # int64, ascending; the covered SIMs, aligned with the problem
    iccids: list[str]  # aligned with device_ids
    plans: list[RatePlan]  # index -> plan; allowed ones first, then current-only plans
    comm_plan_ids: list[int]
    missing_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # SIMs without usage
    missing_iccids: list[str] = field(default_factory=list)
    missing_current: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # plan index or -1
    missing_factor: np.ndarray = field(default_factory=lambda: np.zeros(0))  # proration factor of each
    # Per covered SIM: why it cannot move (KeptReason value), "" when it may.
    kept_reason: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<U10"))
    # Each SIM's customer id (-1 for none): covered ones aligned with device_ids, then the missing ones.
    customer_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    missing_customer_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Per covered SIM: its pool key when the account pools per customer or account-wide (optimizer.pools);
    # None when the group is the pool scope (the legacy rule).
    pool_key: np.ndarray | None = None
    group_pk: int = 0

    @property
    def plan_ids(self) -> np.ndarray:
        return np.array([p.pk for p in self.plans], dtype=np.int64)

    @property
    def sims(self) -> int:
        """Every billable SIM of the group, with usage or without."""
        return len(self.device_ids) + len(self.missing_ids)

    @property
    def fingerprint(self) -> str:
        """Identifies the data a result was computed on: SIMs, their usage, current plans, catalogue."""
        digest = hashlib.sha256()
        for part in (self.device_ids.astype("<i8"), self.problem.usage_mb.astype("<f8"),
                     self.problem.current_plan.astype("<i4"), self.plan_ids.astype("<i8"),
                     self.missing_ids.astype("<i8"), self.problem.factors.astype("<f8"),
                     self.problem.movable_mask.astype("u1")):
            digest.update(part.tobytes())
        if self.pool_key is not None:
            digest.update(b"pool" + self.pool_key.astype("<i8").tobytes())
        return digest.hexdigest()

    def missing_fixed_charges(self) -> np.ndarray:
        """What each SIM without usage costs on its current plan before any overage: the recurring charge and
        fee the charge type counts (its overage cannot be known). NaN for a SIM without a current plan."""
        cat = self.problem.catalogue
        cur = self.missing_current
        known = cur >= 0
        idx = np.maximum(cur, 0)
        factor = self.missing_factor if len(self.missing_factor) == len(cur) else self.problem.billing.factor
        if self.problem.charge_type == "overage":
            charge = np.zeros(len(cur))
        else:
            charge = factor * cat.monthly_cost[idx] + cat.fee_per_sim[idx] if len(cur) else np.zeros(0)
        return np.where(known, charge, np.nan)


def billable_devices(*, provider_id: int, period, customer_id: int | None = None):
    """The account's SIMs the carrier bills in `period` (with `customer_id`: that customer's only)."""
    devices = Device.objects.filter(billed_in_cycle(cycle_start=period.starts_at()), provider_id=provider_id,
                                    missing_since__isnull=True)
    return devices if customer_id is None else devices.filter(customer_id=customer_id)


def run_devices(*, run):
    """The SIMs a run optimizes: the account's billable SIMs, or its customer's."""
    return billable_devices(provider_id=run.provider_id, period=run.billing_period, customer_id=run.customer_id)


def group_devices(*, group: CommGroup):
    return run_devices(run=group.run).filter(communication_plan__in=group.communication_plans.all())


def usage_fresh_since(*, run) -> dt.datetime:
    """Usage stored before this instant is too old for the run (USAGE_MAX_AGE_HOURS before the run began);
    a row stored by the run's own sync is always newer. Fixed per run, so every work item and the
    finalize of one run see the same SIMs as covered."""
    began = run.started_at or run.created_at or timezone.now()
    return began - dt.timedelta(hours=settings.USAGE_MAX_AGE_HOURS)


def kept_without_plan(*, group: CommGroup) -> list[str]:
    """ICCIDs of the group's SIMs that must keep their plan (pinned, or stopped this cycle) but have none."""
    return list(group_devices(group=group).filter(Q(pin__isnull=False) | Q(status__in=STOPPED_STATUSES),
                                                  rate_plan__isnull=True).order_by("iccid").values_list("iccid", flat=True))


def group_usage(*, group: CommGroup) -> dict[int, float]:
    """Projected usage (MB) of the group's SIMs that have usage of the run's cycle, fresh enough; by device id."""
    rows = (DeviceUsage.objects.filter(billing_period_id=group.run.billing_period_id,
                                       synced_at__gte=usage_fresh_since(run=group.run),
                                       device__in=group_devices(group=group))
            .annotate(mb=Cast("projected_mb", FloatField())).values_list("device_id", "mb"))
    return dict(rows)


def catalogue_from_plans(plans: list[RatePlan]) -> Catalogue:
    return Catalogue(
        plan_ids=tuple(p.code for p in plans),
        monthly_cost=np.array([float(p.monthly_cost) for p in plans]),
        included_mb=np.array([float(p.included_mb) for p in plans]),
        overage_rate=np.array([float(p.overage_rate) for p in plans]),
        overage_block_mb=np.array([float(p.overage_block_mb) for p in plans]),
        fee_per_sim=np.array([float(p.fee_per_sim) for p in plans]),
        pooled=np.array([p.pooled for p in plans], dtype=bool),
    )


def days_active(*, period, tz, activated: dt.datetime | None, stopped: dt.datetime | None) -> int:
    """Days of `period` the carrier bills a SIM for (cost-model.md `days_active`), in the account's time zone
    `tz`: from its activation day (when inside the cycle) to its deactivation day (when inside it), inclusive."""
    first = max(period.start_date, activated.astimezone(tz).date()) if activated else period.start_date
    last = min(period.end_date, stopped.astimezone(tz).date()) if stopped else period.end_date
    return max(0, min(period.days_in_cycle, (last - first).days + 1))


def days_active_days(*, period, activated: list[dt.date | None], stopped: list[dt.date | None]) -> np.ndarray:
    """days_active of many SIMs at once, from their activation and deactivation days (None: before the cycle,
    or not stopped) in the account's time zone; the same days as days_active gives one SIM at a time."""
    start, end = np.datetime64(period.start_date, "D"), np.datetime64(period.end_date, "D")
    first = np.array(activated, dtype="datetime64[D]").reshape(-1)
    last = np.array(stopped, dtype="datetime64[D]").reshape(-1)
    first = np.where(np.isnat(first), start, np.maximum(start, first))
    last = np.where(np.isnat(last), end, np.minimum(end, last))
    return np.clip((last - first).astype(np.int64) + 1, 0, period.days_in_cycle).astype(np.float64)


def pool_key_of(*, pooling: str, group_pk: int, customer_id: int | None) -> int | None:
    """A SIM's pool key (None: its group is the pool scope). Customer ids are positive, so SIMs without a
    customer (key -group pk) pool with the others of their group that have none, never with a customer's."""
    if pooling == Pooling.ACCOUNT:
        return 0
    if pooling == Pooling.CUSTOMER:
        return -group_pk if customer_id is None else int(customer_id)
    return None


def group_data(*, group: CommGroup, charge_type: str = "both") -> GroupData:
    """The group's SIMs, plans and usage of its run's billing period, as engine arrays.

    Only SIMs with usage of the cycle (group_usage) go into the problem; the others are listed
    as missing, never priced as if they used 0 MB. A SIM deactivated or retired this cycle, or
    pinned by an operator, is not movable: it keeps its plan and counts in its pool. With an account
    that prorates, each SIM's factor is its days_active over the days of the cycle."""
    run = group.run
    period = run.billing_period
    allowed_plans = list(group.rate_plans.order_by("pk"))
    comm_plan_ids = sorted(group.communication_plans.values_list("pk", flat=True))
    prorates, tz = run.provider.bills_prorated, run.provider.tz
    # The activation and deactivation days in the account's time zone, from the database: parsing a million
    # timestamps here took longer than the query.
    records = list(group_devices(group=group).order_by("pk").annotate(
        activated_day=TruncDate("date_activated", tzinfo=tz), stopped_day=TruncDate("deactivated_at", tzinfo=tz),
    ).values_list("pk", "rate_plan_id", "communication_plan_id", "iccid", "status", "pin__id", "activated_day",
                  "stopped_day", "customer_id"))
    rows = np.array([r[:4] for r in records], dtype=object).reshape(-1, 4)
    all_ids = rows[:, 0].astype(np.int64)
    current_ids = np.array([-1 if v is None else v for v in rows[:, 1]], dtype=np.int64)
    comm_ids = rows[:, 2].astype(np.int64)
    all_iccids = rows[:, 3].tolist()
    customers = np.array([-1 if r[8] is None else r[8] for r in records], dtype=np.int64)
    kept = np.array([KeptReason.PINNED if r[5] is not None else "" if r[4] == DeviceStatus.ACTIVATED
                     else KeptReason.STOPPED for r in records], dtype=object)
    days = period.days_in_cycle
    if prorates:
        stopped = [r[7] if r[4] in STOPPED_STATUSES else None for r in records]
        factor = days_active_days(period=period, activated=[r[6] for r in records], stopped=stopped) / days
    else:
        factor = np.ones(len(records), dtype=np.float64)

    # Current plans outside the group's allowed set are still priced (so "current
    # cost" is real) but never recommended.
    allowed_pk = {p.pk for p in allowed_plans}
    extra_pk = sorted({int(c) for c in np.unique(current_ids) if c >= 0 and int(c) not in allowed_pk})
    plans = allowed_plans + list(RatePlan.objects.filter(pk__in=extra_pk).order_by("pk"))
    foreign = {p.pk: p.code for p in plans if p.provider_id != run.provider_id}
    if foreign:
        bad = [(c, foreign[int(pk)]) for c, pk in zip(all_iccids, current_ids, strict=True) if int(pk) in foreign]
        raise foreign_plan_refusal(iccids=[c for c, _ in bad], plans=[p for _, p in bad])
    index_of = {p.pk: i for i, p in enumerate(plans)}
    current = np.array([index_of.get(int(c), -1) for c in current_ids], dtype=np.int32) if len(current_ids) else np.zeros(0, np.int32)
    homeless = (kept != "") & (current < 0)
    if homeless.any():
        bad = [c for c, h in zip(all_iccids, homeless, strict=True) if h]
        raise KeptWithoutPlan(
            f"{len(bad)} SIM(s) must keep their rate plan (pinned, or deactivated this cycle) but have none in the "
            f"catalogue: {', '.join(bad[:20])}{' …' if len(bad) > 20 else ''}; add the plan or unpin the SIM",
            field="rate_plan", extra={"iccids": bad})

    usage_of = group_usage(group=group) if len(all_ids) else {}
    covered = np.array([int(d) in usage_of for d in all_ids], dtype=bool)
    usage = np.array([usage_of[int(d)] for d in all_ids[covered]], dtype=np.float64)
    device_ids = all_ids[covered]
    iccids = [c for c, ok in zip(all_iccids, covered, strict=True) if ok]

    comm_index = {pk: i for i, pk in enumerate(comm_plan_ids)}
    allowed = np.zeros((1, len(plans)), dtype=bool)
    allowed[0, : len(allowed_plans)] = True
    movable = kept[covered] == ""
    pool_key = None
    if run.provider.pooling != Pooling.GROUP:
        keys = [pool_key_of(pooling=run.provider.pooling, group_pk=group.pk, customer_id=r[8]) for r in records]
        pool_key = np.array(keys, dtype=np.int64)[covered] if records else np.zeros(0, np.int64)
    problem = Problem(
        catalogue=catalogue_from_plans(plans),
        usage_mb=usage,
        group=np.zeros(len(device_ids), dtype=np.int32),
        allowed=allowed,
        billing=Billing(days_in_cycle=days, days_remaining=days, prorate=prorates),
        charge_type=charge_type,
        group_names=(group.name,),
        current_plan=current[covered],
        comm_plan=np.array([comm_index[int(c)] for c in comm_ids[covered]], dtype=np.int32),
        factor=factor[covered] if prorates else None,
        movable=None if movable.all() else movable,
        # One key in the group: its pool is the group's, as without keys.
        pool=pool_key if pool_key is not None and np.unique(pool_key).size > 1 else None,
    )
    return GroupData(problem=problem, device_ids=device_ids, iccids=iccids, plans=plans, comm_plan_ids=comm_plan_ids,
                     kept_reason=kept[covered].astype(str),
                     missing_ids=all_ids[~covered],
                     missing_iccids=[c for c, ok in zip(all_iccids, covered, strict=True) if not ok],
                     missing_current=current[~covered], missing_factor=factor[~covered],
                     customer_ids=customers[covered], missing_customer_ids=customers[~covered], pool_key=pool_key,
                     group_pk=group.pk)


NO_PLAN = "(no current plan)"


@dataclass(frozen=True)
class PlanCost:
    """One bar pair of the before/after chart: a rate plan's SIMs and cost now and recommended."""

    code: str
    sims_before: int
    cost_before: Decimal | None
    sims_after: int
    cost_after: Decimal


@dataclass(frozen=True)
class PlanMoveSum:
    """The SIMs of a run going from one plan (None: none known) to another: how many, what they cost before
    (the known costs; `priced` of them had one) and after."""

    current_plan_id: int | None
    recommended_plan_id: int
    sims: int
    priced: int
    cost_before: Decimal | None
    cost_after: Decimal


def plan_move_sums(*, run_id: int) -> list[PlanMoveSum]:
    """Every (current plan, recommended plan) pair of the run, summed in one grouped query on plan ids: the
    session page's chart and its migration matrix both add these up (at 1M SIMs each pass over the rows costs)."""
    # SQLite sums decimals as floats; back to the stored 4 places so sums stay exact to the cent.
    def places(value):
        return None if value is None else Decimal(value).quantize(MONEY_PLACES)

    rows = (DeviceAssignment.objects.filter(run_id=run_id).order_by().values("current_plan_id", "recommended_plan_id")
            .annotate(sims=Count("pk"), priced=Count("current_cost"), before=Sum("current_cost"),
                      after=Sum("recommended_cost")))
    return [PlanMoveSum(r["current_plan_id"], r["recommended_plan_id"], r["sims"], r["priced"], places(r["before"]),
                        places(r["after"]) or Decimal(0)) for r in rows]


def move_plan_codes(moves: list[PlanMoveSum]) -> dict[int, str]:
    """The codes of the plans the moves name (from and to), by plan id: one query."""
    ids = {m.current_plan_id for m in moves} | {m.recommended_plan_id for m in moves}
    return dict(RatePlan.objects.filter(pk__in=ids - {None}).values_list("pk", "code"))


def plan_costs(*, run, moves: list[PlanMoveSum] | None = None) -> list[PlanCost]:
    """Cost per rate plan before (current plans) and after (recommended plans), from the stored assignments
    (or from their `moves`, plan_move_sums, when the caller has them)."""
    moves = plan_move_sums(run_id=run.pk) if moves is None else moves
    before: dict[int | None, tuple[int, Decimal | None]] = {}
    after: dict[int, tuple[int, Decimal]] = {}
    for m in moves:
        n, cost = before.get(m.current_plan_id, (0, None))
        before[m.current_plan_id] = (n + m.sims, cost if m.cost_before is None
                                     else (cost or Decimal(0)) + m.cost_before)
        n, cost = after.get(m.recommended_plan_id, (0, Decimal(0)))
        after[m.recommended_plan_id] = (n + m.sims, cost + m.cost_after)
    plans = RatePlan.objects.filter(pk__in=(set(before) | set(after)) - {None}).order_by("included_mb", "code")
    result = []
    for plan in plans:
        n_before, cost_before = before.get(plan.pk, (0, Decimal(0)))
        n_after, cost_after = after.get(plan.pk, (0, Decimal(0)))
        result.append(PlanCost(plan.code, n_before, cost_before, n_after, cost_after or Decimal(0)))
    if None in before:
        result.append(PlanCost(NO_PLAN, before[None][0], None, 0, Decimal(0)))
    return result
