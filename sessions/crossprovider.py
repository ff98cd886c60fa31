"""Cross-provider sessions: a customer's accounts side by side, and what its whole fleet would cost on each."""
from __future__ import annotations

from decimal import Decimal

from optimizer.assignments import moves_count
from optimizer.fleet import fleet_cost_on_catalogue, runs_usage
from optimizer.models import DeviceAssignment
from optimizer.serializers import money_out
from sessions.models import OptimizationSession, SessionStatus, Stage


def session_accounts(session: OptimizationSession) -> list[OptimizationSession]:
    """The sessions of a cross-provider optimization, one per account, the first (the parent) first."""
    root_id = session.parent_id or session.pk
    return list(OptimizationSession.objects.filter(pk=root_id).select_related("provider", "billing_period", "run")) + list(
        OptimizationSession.objects.filter(parent_id=root_id).select_related("provider", "billing_period", "run")
        .order_by("pk"))


def _status(member: OptimizationSession, *, building: OptimizationSession) -> str:
    """A member's status; the session whose comparison this is is still finalizing when it is built (its report
    carries the comparison): the status it completes with."""
    if member.pk == building.pk and member.stage == Stage.FINALIZING:
        return SessionStatus.SUCCEEDED_WITH_WARNINGS if member.warnings else SessionStatus.SUCCEEDED
    return member.status


def _changes(member: OptimizationSession) -> int:
    """How many of an account's SIMs change plan: from the run's kept plan moves once it finished (no count of its
    rows), else the rows counted."""
    kept = moves_count(run=member.run, changed=True, from_plan=None, to_plan=None) if member.run_id else None
    return kept if kept is not None else DeviceAssignment.objects.filter(run_id=member.run_id, changed=True).count()


def comparison_build(*, session: OptimizationSession) -> dict:
    """Each account's SIMs of the customer, cost before and after, savings and changes (each optimized on its own
    catalogue: the changes a push makes stay on their carrier), and what the customer's whole fleet (the SIMs
    with usage, on every account) would cost on each account's catalogue. Money as decimal strings."""
    members = session_accounts(session)
    usage, without_usage = runs_usage(run_ids=[m.run_id for m in members])
    # Money of accounts billed in different currencies is neither added up nor compared.
    one_currency = len({m.provider.currency for m in members}) == 1
    rows = []
    for m in members:
        # No SIM with usage: there is no fleet to price (not a fleet that costs nothing).
        fleet = (fleet_cost_on_catalogue(provider=m.provider, period=m.billing_period, usage_mb=usage,
                                         charge_type=m.charge_type) if len(usage) else None)
        figures = m.figures
        rows.append({
            "provider": m.provider_id, "provider_name": m.provider.name, "session": str(m.guid),
            "status": _status(m, building=session),
            "billing_period_end": m.billing_period.end_date.isoformat(),
            "sims": m.device_count, "sims_with_usage": m.sims_with_usage,
            "current_cost": money_out(m.current_cost), "optimized_cost": money_out(m.optimized_cost),
            "savings": money_out(figures.savings),
            "changes": _changes(m),
            "fleet_cost": money_out(fleet and fleet.cost), "fleet_lower_bound": money_out(fleet and fleet.lower_bound),
        })
    priced = [Decimal(r["fleet_cost"]) for r in rows if r["fleet_cost"] is not None] if one_currency else []
    cheapest = min(priced) if priced else None
    for r in rows:
        r["cheapest_for_fleet"] = cheapest is not None and r["fleet_cost"] is not None and Decimal(r["fleet_cost"]) == cheapest

    def total(key):
        values = [r[key] for r in rows]
        return None if not one_currency or any(v is None for v in values) else money_out(sum(Decimal(v) for v in values))

    return {
        "customer": session.customer_id,
        "accounts": rows,
        "fleet_sims": int(len(usage)) + without_usage,
        "fleet_sims_priced": int(len(usage)),
        "total": {"sims": sum(r["sims"] for r in rows), "current_cost": total("current_cost"),
                  "optimized_cost": total("optimized_cost"), "savings": total("savings"),
                  "changes": sum(r["changes"] for r in rows)},
    }
