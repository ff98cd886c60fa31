"""A session's savings-versus-changes frontier as its pages, API and report show it."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sessions.models import OptimizationSession


@dataclass(frozen=True)
class FrontierRow:
    """One change budget: the cheapest answer found with at most max_changes SIMs changing plan, and the
    proven bound below every such answer."""

    max_changes: int
    changes: int  # moves this budget's answer makes (<= max_changes)
    total_cost: Decimal
    lower_bound: Decimal
    savings: Decimal | None  # against the current plans
    savings_share: float | None  # of the unconstrained answer's savings
    changes_share: float | None  # of the unconstrained answer's changes
    chosen: bool  # the session's budget

    @property
    def gap(self) -> float | None:
        return float((self.total_cost - self.lower_bound) / self.lower_bound) if self.lower_bound > 0 else None


def frontier_rows(session: OptimizationSession) -> list[FrontierRow]:
    """The stored frontier of the session's run, each point with its share of the savings and changes."""
    stored = session.run.frontier or {}
    points = stored.get("points", [])
    if not points:
        return []
    full_changes = stored.get("unconstrained_changes") or 0
    current = session.current_cost
    full = Decimal(points[-1]["total_cost"])
    rows = []
    for p in points:
        cost, bound = Decimal(p["total_cost"]), Decimal(p["lower_bound"])
        savings = None if current is None else current - cost
        share = None
        if current is not None and current - full > 0:
            share = float((current - cost) / (current - full))
        rows.append(FrontierRow(
            max_changes=p["max_changes"], changes=p["changes"], total_cost=cost, lower_bound=bound, savings=savings,
            savings_share=share, changes_share=p["max_changes"] / full_changes if full_changes else None,
            chosen=session.max_changes == p["max_changes"]))
    return rows


def chosen_row(session: OptimizationSession) -> FrontierRow | None:
    return next((r for r in frontier_rows(session) if r.chosen), None)


def frontier_chart(rows: list[FrontierRow], *, width: int = 640, height: int = 260) -> dict | None:
    """Coordinates of a server-side SVG: cost (and proven bound) against the change budget, one marker per point."""
    if len(rows) < 2:
        return None
    left, right, top, bottom = 70, 20, 15, 40
    xs = [r.max_changes for r in rows]
    lo = float(min(min(r.lower_bound for r in rows), min(r.total_cost for r in rows)))
    hi = float(max(r.total_cost for r in rows))
    span_x = max(1, max(xs) - min(xs))
    span_y = (hi - lo) or 1.0

    def x(k):
        return round(left + (k - min(xs)) / span_x * (width - left - right), 1)

    def y(v):
        return round(top + (hi - float(v)) / span_y * (height - top - bottom), 1)

    points = [{"x": x(r.max_changes), "y": y(r.total_cost), "yb": y(r.lower_bound), "row": r} for r in rows]
    ticks = [{"y": y(lo + span_y * f), "label": f"{lo + span_y * f:,.0f}"} for f in (0.0, 0.5, 1.0)]
    xticks = [{"x": x(k), "label": f"{k:,}"} for k in (xs[0], xs[len(xs) // 2], xs[-1])]
    return {"width": width, "height": height, "points": points, "ticks": ticks, "xticks": xticks,
            "cost_line": " ".join(f"{p['x']},{p['y']}" for p in points),
            "bound_line": " ".join(f"{p['x']},{p['yb']}" for p in points),
            "left": left, "bottom": height - bottom, "right": width - right}
