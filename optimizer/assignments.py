"""A run's per-SIM recommendations as the workbench, the API and the CSV export read them: filtered, sorted, summed."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.core.paginator import Paginator
from django.db.models import Count, F, Q, QuerySet, Sum

from optimizer.models import DeviceAssignment, OptimizationRun
from optimizer.selectors import PlanMoveSum, move_plan_codes, plan_move_sums
from rateplans.models import RatePlan

# Sort keys a caller may ask for, and the ORM ordering each means (ICCID breaks ties, so pages are stable).
# Each is served by an index on (run, …), so a first page of a million SIMs reads a page, not the table.
SORTS = {
    "iccid": ("iccid",),
    "-saving": (F("saving").desc(nulls_last=True), "iccid"),
}

CSV_COLUMNS = ["iccid", "customer", "group", "usage_mb", "current_plan", "recommended_plan", "current_cost",
               "recommended_cost", "saving", "changed", "kept_reason"]


class AssignmentPaginator(Paginator):
    """Pages of a run's SIM list read in two steps: the page's ICCIDs through the ordering's index, then those
    rows with their joins (`rows`, the same run's rows with their select_related).

    The offset walks the index only: every ordering index of a run's rows holds the ICCID, and on PostgreSQL the
    (run, iccid) and saving indexes also the changed flag (INCLUDE), so a page of the whole list or of the changes
    is an index-only scan once the run's rows are vacuumed (assignments_vacuum). Reading the offset's rows with
    their joins cost page 1,000 of a 185k-SIM session 300 ms (50,000 rows through five joins); page 10,000 of a
    million SIMs' changes by saving read 500,000 rows of the table through the index, 506 ms, and 117 ms
    index-only."""

    def __init__(self, object_list: QuerySet[DeviceAssignment], per_page: int, *, rows: QuerySet[DeviceAssignment],
                 count: int | None = None, **kwargs):
        super().__init__(object_list.values_list("iccid", flat=True), per_page, **kwargs)
        self.rows = rows
        if count is not None:
            self.count = count  # known already (list_count): no count of the rows (a cached property)

    def _get_page(self, iccids, number, paginator):
        iccids = list(iccids)
        # A run holds an ICCID once (a SIM of one account, once); were one there twice, both rows show.
        by_iccid: dict[str, list[DeviceAssignment]] = {}
        for a in self.rows.filter(iccid__in=iccids).order_by("pk") if iccids else ():
            by_iccid.setdefault(a.iccid, []).append(a)
        return super()._get_page([a for i in dict.fromkeys(iccids) for a in by_iccid.get(i, [])], number, paginator)


def iccid_prefix_range(digits: str) -> dict:
    """The ICCIDs starting with `digits` as a range the (run, iccid) index serves (LIKE 'p%' it may not,
    under a non-C collation): >= digits, and < the next prefix ("8901" -> "8902", "8999" -> "9")."""
    head = digits.rstrip("9")
    bound = {"iccid__gte": digits}
    if head:
        bound["iccid__lt"] = head[:-1] + str(int(head[-1]) + 1)
    return bound


def assignments_csv_rows(qs: QuerySet[DeviceAssignment], *, chunk: int = 5000) -> Iterator[list]:
    """Rows of CSV_COLUMNS for `qs`, streamed from a server-side cursor (a million rows never sit in memory)."""
    rows = qs.values_list("iccid", "customer__name", "comm_group__name", "usage_mb", "current_plan__code",
                          "recommended_plan__code", "current_cost", "recommended_cost", "saving", "changed", "kept_reason")
    for iccid, customer, group, usage, cur, rec, before, after, saving, changed, kept in rows.iterator(chunk_size=chunk):
        yield [iccid, customer or "", group, "" if usage is None else usage, cur or "", rec, "" if before is None else before, after,
               "" if saving is None else saving, "yes" if changed else "no", kept]


@dataclass(frozen=True)
class PlanMove:
    """SIMs moving from one plan to another (the same plan: staying), and what they cost before and after."""

    from_plan: str
    to_plan: str
    sims: int
    cost_before: Decimal | None
    cost_after: Decimal

    @property
    def saving(self) -> Decimal | None:
        return None if self.cost_before is None else self.cost_before - self.cost_after


@dataclass(frozen=True)
class MigrationMatrix:
    """Where SIMs move: plans as rows (from) and columns (to), each cell a PlanMove."""

    plans: list[str]
    cells: dict[tuple[str, str], PlanMove]

    def row(self, plan: str) -> list[PlanMove | None]:
        return [self.cells.get((plan, to)) for to in self.plans]


UNKNOWN_PLAN = "(not in catalogue)"


def _kept(run: OptimizationRun, key: str, basis: dict, compute):
    """`compute()` (a JSON value), kept in run.sums[key] with what it was computed from: a finished run's rows never
    change, so it stands until the run finishes again (finalize run again) or the basis differs."""
    if run.finished_at is None:
        return compute()
    basis = {"finished_at": run.finished_at.isoformat(), **basis}
    kept = (run.sums or {}).get(key)
    if isinstance(kept, dict) and kept.get("basis") == basis:
        return kept["value"]
    value = compute()
    run.sums = {**(run.sums or {}), key: {"basis": basis, "value": value}}
    OptimizationRun.objects.filter(pk=run.pk).update(sums=run.sums)  # two pages at once both write the same value
    return value


def _dec(value) -> str | None:
    return None if value is None else str(value)


def _num(value) -> Decimal | None:
    return None if value is None else Decimal(value)


def run_plan_moves(*, run: OptimizationRun) -> list[PlanMoveSum]:
    """plan_move_sums of the run, read once (the session page's chart and matrix)."""
    rows = _kept(run, "plan_moves", {}, lambda: [
        [m.current_plan_id, m.recommended_plan_id, m.sims, m.priced, _dec(m.cost_before), _dec(m.cost_after)]
        for m in plan_move_sums(run_id=run.pk)])
    return [PlanMoveSum(cur, rec, sims, priced, _num(before), _num(after))
            for cur, rec, sims, priced, before, after in rows]


def moves_count(*, run: OptimizationRun, changed: bool | None, from_plan: str | None, to_plan: str | None) -> int | None:
    """How many of a finished run's SIMs a list filtered by change and plans only holds, from its kept plan moves
    (counting a million rows is a pass over them: most of a first page's time); None for a run not finished."""
    if run.finished_at is None:
        return None
    moves = run_plan_moves(run=run)
    code = move_plan_codes(moves) if from_plan or to_plan else {}
    # A row changes exactly when its recommended plan is not its current one (finalize writes it so).
    return sum(m.sims for m in moves
               if (changed is None or changed == (m.current_plan_id != m.recommended_plan_id))
               and (not from_plan or code.get(m.current_plan_id) == from_plan)
               and (not to_plan or code[m.recommended_plan_id] == to_plan))


def list_count(*, run: OptimizationRun, filters: dict) -> int | None:
    """The length of a list of the run's SIMs with these (valid, AssignmentFilterSet) filters when the kept sums
    know it: filtered by change and plans only (the whole list, changed only, a move). None: count the rows."""
    used = {k: v for k, v in filters.items() if v not in (None, "") and k != "sort"}
    if not set(used) <= {"changed", "from_plan", "to_plan"}:
        return None
    return moves_count(run=run, changed=used.get("changed"), from_plan=used.get("from_plan"),
                       to_plan=used.get("to_plan"))


def run_usage(*, run: OptimizationRun) -> tuple[dict[int, list[UsageBin]], list[PoolFill]]:
    """usage_histograms between the allowances of the account's catalogue, and pool_fills, of the run, read once
    (the usage page); read again when the catalogue's allowances are not those they were binned by."""
    allowances = sorted(set(RatePlan.objects.filter(provider_id=run.provider_id).values_list("included_mb", flat=True)))

    def compute():
        histograms = usage_histograms(run_id=run.pk, allowances=allowances)
        return {"bins": {str(g): [[_dec(b.low), _dec(b.high), b.sims] for b in bins] for g, bins in histograms.items()},
                "pools": [[p.group_id, p.plan, p.sims, _dec(p.usage_mb), _dec(p.allowance_mb)]
                          for p in pool_fills(run_id=run.pk)]}

    value = _kept(run, "usage", {"allowances": [str(a) for a in allowances]}, compute)
    histograms = {int(g): [UsageBin(_num(lo), _num(hi), sims) for lo, hi, sims in bins]
                  for g, bins in value["bins"].items()}
    fills = [PoolFill(group_id=g, plan=plan, sims=sims, usage_mb=_num(usage), allowance_mb=_num(allowance))
             for g, plan, sims, usage, allowance in value["pools"]]
    return histograms, fills


def plan_migrations(*, run_id: int, moves: list[PlanMoveSum] | None = None) -> MigrationMatrix:
    """From plan × to plan: SIM counts and money, from one grouped query (plan_move_sums, or the caller's)."""
    moves = plan_move_sums(run_id=run_id) if moves is None else moves
    code = move_plan_codes(moves)
    cells = {}
    for m in moves:
        source = code.get(m.current_plan_id) or UNKNOWN_PLAN
        target = code[m.recommended_plan_id]
        # A cost before is known only when every SIM of the cell had one.
        before = m.cost_before if m.priced == m.sims else None
        cells[(source, target)] = PlanMove(from_plan=source, to_plan=target, sims=m.sims, cost_before=before,
                                           cost_after=m.cost_after)
    plans = sorted({p for key in cells for p in key}, key=lambda p: (p == UNKNOWN_PLAN, p))
    return MigrationMatrix(plans=plans, cells=cells)


@dataclass(frozen=True)
class UsageBin:
    """SIMs of a group whose usage is above `low` MB and at most `high` MB (None: no upper end)."""

    low: Decimal | None  # None: the bin of SIMs that used nothing
    high: Decimal | None
    sims: int


@dataclass(frozen=True)
class PoolFill:
    """A pool after the recommendation: its members' usage against their allowance."""

    group_id: int
    plan: str
    sims: int
    usage_mb: Decimal
    allowance_mb: Decimal

    @property
    def fill(self) -> float | None:
        return float(self.usage_mb / self.allowance_mb) if self.allowance_mb else None


def usage_histograms(*, run_id: int, allowances: list[Decimal]) -> dict[int, list[UsageBin]]:
    """Per group, SIMs counted between consecutive plan allowances (0, then each allowance, then above the
    largest): how many fit in each plan. One grouped query for every group of the run."""
    edges = sorted(set(allowances))
    bins = [(None, Decimal(0))] + [(lo, hi) for lo, hi in zip([Decimal(0), *edges], edges, strict=False) if hi > lo]
    bins.append((edges[-1] if edges else Decimal(0), None))
    counts = {}
    for i, (lo, hi) in enumerate(bins):
        if lo is None:
            cond = Q(usage_mb__lte=0)
        elif hi is None:
            cond = Q(usage_mb__gt=lo)
        else:
            cond = Q(usage_mb__gt=lo, usage_mb__lte=hi)
        counts[f"b{i}"] = Count("pk", filter=cond)
    rows = DeviceAssignment.objects.filter(run_id=run_id).order_by().values("comm_group_id").annotate(**counts)
    return {row["comm_group_id"]: [UsageBin(lo, hi, row[f"b{i}"]) for i, (lo, hi) in enumerate(bins)]
            for row in rows}


def pool_fills(*, run_id: int) -> list[PoolFill]:
    """Every pool of the recommendation (a group's SIMs on one pooled plan): usage against allowance."""
    rows = (DeviceAssignment.objects.filter(run_id=run_id, recommended_plan__pooled=True).order_by()
            .values("comm_group_id", "recommended_plan__code", "recommended_plan__included_mb")
            .annotate(sims=Count("pk"), usage=Sum("usage_mb")))
    return sorted((PoolFill(group_id=r["comm_group_id"], plan=r["recommended_plan__code"], sims=r["sims"],
                            usage_mb=r["usage"] or Decimal(0),
                            allowance_mb=r["recommended_plan__included_mb"] * r["sims"]) for r in rows),
                  key=lambda p: (p.group_id, p.plan))
