"""Realized savings of a run: its cycle priced by the cost model with the final usage the carrier billed.

Both sides are priced by the engine (engine.pricing.price, shared/spec/cost-model.md), never by hand: one problem
holding every priced SIM of the run, its communication group as the pool scope, the run's charge type, and, for an
account that prorates, each SIM's days_active factor. "After" assigns each SIM the plan the carrier billed the
cycle on (its plan at the cycle's end, as the final usage sync read it: pushed changes confirmed or not, changes
made anywhere else too); "before" the plan the SIM had when the run read it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from django.db import transaction
from django.db.models import Max

from carrieropt.money import to_money
from devices.models import STOPPED_STATUSES, Device, DeviceUsage
from optimizer.engine import Billing, Problem
from optimizer.engine.pricing import price
from optimizer.models import RUN_ENDED, DeviceAssignment, OptimizationRun, RunRealized
from optimizer.selectors import catalogue_from_plans, days_active
from rateplans.models import RatePlan

MISSING_KEPT = 1_000
NO_FINAL_USAGE = "no final usage reported by the carrier"


@dataclass
class _Group:
    name: str
    sims: int = 0
    priced: int = 0
    missing: int = 0
    projected_mb: float = 0.0
    final_mb: float = 0.0
    compared: int = 0
    abs_error_mb: float = 0.0
    projected_savings: float = 0.0


def _mb(value: float) -> str:
    return f"{value:.3f}"


def realized_compute(*, run: OptimizationRun) -> RunRealized | None:
    """Compute (again) and store the run's realized savings; None when its cycle has no final usage yet."""
    if run.status not in RUN_ENDED:
        return None
    period = run.billing_period
    finals = DeviceUsage.objects.filter(billing_period=period, device__provider_id=run.provider_id,
                                        final_synced_at__isnull=False)
    synced_at = finals.aggregate(latest=Max("final_synced_at"))["latest"]
    if synced_at is None:
        return None
    final_of = {d: (float(mb), code) for d, mb, code in finals.filter(final_mb__isnull=False).values_list(
        "device_id", "final_mb", "final_rate_plan_code")}
    rows = list(DeviceAssignment.objects.filter(run=run).order_by("device_id").values_list(
        "device_id", "iccid", "comm_group_id", "current_plan_id", "recommended_plan_id", "usage_mb",
        "current_cost", "recommended_cost", "changed"))
    devices = {pk: (status, activated, stopped, code) for pk, status, activated, stopped, code in
               Device.objects.filter(assignments__run=run).values_list(
                   "pk", "status", "date_activated", "deactivated_at", "rate_plan_code")}
    plans = list(RatePlan.objects.filter(provider_id=run.provider_id).order_by("pk"))
    index_of_pk = {p.pk: i for i, p in enumerate(plans)}
    index_of_code = {p.code: i for i, p in enumerate(plans)}
    group_ids = sorted({r[2] for r in rows})
    group_index = {g: i for i, g in enumerate(group_ids)}
    names = dict(run.comm_groups.values_list("pk", "name"))
    groups = [_Group(name=names.get(g, str(g))) for g in group_ids]

    provider = run.provider
    prorates, tz, days = provider.bills_prorated, provider.tz, period.days_in_cycle
    usage, group, before, after, factor = [], [], [], [], []
    missing: list[dict] = []
    missing_count = changes_made = followed = recommended = 0
    for device_id, iccid, group_id, current_id, recommended_id, projected, cur_cost, rec_cost, changed in rows:
        g = groups[group_index[group_id]]
        g.sims += 1
        recommended += bool(changed)
        final = final_of.get(device_id)
        reason = ""
        if final is None:
            reason = NO_FINAL_USAGE
        else:
            # The carrier names the plan it billed the cycle on; if it named none, the plan last synced stands in.
            code = final[1] or devices[device_id][3]
            if current_id not in index_of_pk:
                reason = "no rate plan at the time of the run"
            elif code not in index_of_code:
                reason = f"rate plan {code!r} at the cycle's end is not in the catalogue"
        if reason:
            missing_count += 1
            g.missing += 1
            if len(missing) < MISSING_KEPT:
                missing.append({"iccid": iccid, "group": g.name, "reason": reason})
            continue
        g.priced += 1
        b, a = index_of_pk[current_id], index_of_code[code]
        changes_made += a != b
        followed += bool(changed) and plans[a].pk == recommended_id
        usage.append(final[0])
        group.append(group_index[group_id])
        before.append(b)
        after.append(a)
        status, activated, stopped, _ = devices[device_id]
        factor.append(days_active(period=period, tz=tz, activated=activated,
                                  stopped=stopped if status in STOPPED_STATUSES else None) / days if prorates else 1.0)
        if projected is not None:
            g.compared += 1
            g.projected_mb += float(projected)
            g.final_mb += final[0]
            g.abs_error_mb += abs(float(projected) - final[0])
        if cur_cost is not None:
            g.projected_savings += float(cur_cost - rec_cost)

    n_groups = max(1, len(groups))
    before_a, after_a = np.array(before, dtype=np.int64), np.array(after, dtype=np.int64)
    group_a = np.array(group, dtype=np.int32)
    allowed = np.zeros((n_groups, len(plans)), dtype=bool)
    if len(group_a):
        allowed[group_a, after_a] = True
    problem = Problem(
        catalogue=catalogue_from_plans(plans), usage_mb=np.array(usage, dtype=np.float64), group=group_a,
        allowed=allowed, billing=Billing(days_in_cycle=days, days_remaining=days, prorate=prorates),
        charge_type=run.charge_type, group_names=tuple(g.name for g in groups) or ("-",), current_plan=before_a,
        factor=np.array(factor, dtype=np.float64) if prorates else None)
    priced_before, priced_after = price(problem, before_a), price(problem, after_a)

    group_rows = []
    for i, g in enumerate(groups):
        cost_before, cost_after = to_money(priced_before.per_group[i]), to_money(priced_after.per_group[i])
        group_rows.append({
            "name": g.name, "sims": g.sims, "priced": g.priced, "missing": g.missing,
            "cost_before": str(cost_before), "cost_after": str(cost_after), "savings": str(cost_before - cost_after),
            "projected_savings": str(to_money(g.projected_savings)),
            "compared": g.compared, "projected_mb": _mb(g.projected_mb), "final_mb": _mb(g.final_mb),
            "abs_error_mb": _mb(g.abs_error_mb),
            "projection_error": None if not g.final_mb else round((g.projected_mb - g.final_mb) / g.final_mb, 6),
        })
    totals = defaultdict(float)
    for g in groups:
        for name in ("projected_mb", "final_mb", "abs_error_mb", "projected_savings"):
            totals[name] += getattr(g, name)
        totals["compared"] += g.compared
    values = {
        "final_synced_at": synced_at, "sims": len(rows), "priced": len(usage), "missing": missing_count,
        "missing_sims": missing, "cost_before": to_money(priced_before.total), "cost_after": to_money(priced_after.total),
        "projected_savings": to_money(totals["projected_savings"]),
        "projected_mb": Decimal(_mb(totals["projected_mb"])), "final_mb": Decimal(_mb(totals["final_mb"])),
        "compared": int(totals["compared"]), "abs_error_mb": Decimal(_mb(totals["abs_error_mb"])),
        "recommended_changes": recommended, "changes_made": changes_made, "changes_followed": followed,
        "groups": group_rows,
    }
    with transaction.atomic():
        realized, _ = RunRealized.objects.update_or_create(run=run, defaults=values)
    return realized


def realized_compute_period(*, provider_id: int, period_id: int) -> list[RunRealized]:
    """Realized savings of every ended run of the account's cycle (after a final usage sync of it)."""
    runs = OptimizationRun.objects.filter(provider_id=provider_id, billing_period_id=period_id,
                                          status__in=RUN_ENDED).select_related("provider", "billing_period")
    return [r for r in (realized_compute(run=run) for run in runs) if r is not None]
