"""A run's per-SIM recommendations as the workbench, the API and the CSV export read them: filtered, sorted, summed."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, QuerySet, Sum

from optimizer.models import DeviceAssignment

# Sort keys a caller may ask for, and the ORM ordering each means (ICCID breaks ties, so pages are stable).
# Each is served by an index on (run, …), so a first page of a million SIMs reads a page, not the table.
SORTS = {
    "iccid": ("iccid",),
    "-saving": (F("saving").desc(nulls_last=True), "iccid"),
}

CSV_COLUMNS = ["iccid", "group", "usage_mb", "current_plan", "recommended_plan", "current_cost", "recommended_cost",
               "saving", "changed"]


def assignments_filtered(*, run_id: int, filters: dict) -> QuerySet[DeviceAssignment]:
    """The run's assignments matching `filters` (validated by AssignmentFilter), in the order it asks for.

    Every filter is served by an index on (run, …): a first page of a million SIMs
    reads a page, not the table.
    """
    qs = DeviceAssignment.objects.filter(run_id=run_id)
    if "group" in filters:
        qs = qs.filter(comm_group_id=filters["group"])
    if "changed" in filters:
        qs = qs.filter(changed=filters["changed"])
    if filters.get("from_plan"):
        qs = qs.filter(current_plan__code=filters["from_plan"])
    if filters.get("to_plan"):
        qs = qs.filter(recommended_plan__code=filters["to_plan"])
    if filters.get("iccid"):
        qs = qs.filter(iccid__startswith=filters["iccid"], **_prefix_range(filters["iccid"]))
    return qs.order_by(*SORTS[filters.get("sort") or "iccid"])


def _prefix_range(digits: str) -> dict:
    """The ICCIDs starting with `digits` as a range the (run, iccid) index serves (LIKE 'p%' it may not,
    under a non-C collation): >= digits, and < the next prefix ("8901" -> "8902", "8999" -> "9")."""
    head = digits.rstrip("9")
    bound = {"iccid__gte": digits}
    if head:
        bound["iccid__lt"] = head[:-1] + str(int(head[-1]) + 1)
    return bound


def assignments_csv_rows(qs: QuerySet[DeviceAssignment], *, chunk: int = 5000) -> Iterator[list]:
    """Rows of CSV_COLUMNS for `qs`, streamed from a server-side cursor (a million rows never sit in memory)."""
    rows = qs.values_list("iccid", "comm_group__name", "usage_mb", "current_plan__code", "recommended_plan__code",
                          "current_cost", "recommended_cost", "saving", "changed")
    for iccid, group, usage, cur, rec, before, after, saving, changed in rows.iterator(chunk_size=chunk):
        yield [iccid, group, usage, cur or "", rec, "" if before is None else before, after,
               "" if saving is None else saving, "yes" if changed else "no"]


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


def plan_migrations(*, run_id: int) -> MigrationMatrix:
    """From plan × to plan: SIM counts and money, in one grouped query."""
    rows = (DeviceAssignment.objects.filter(run_id=run_id).order_by()
            .values("current_plan__code", "recommended_plan__code")
            .annotate(sims=Count("pk"), before=Sum("current_cost"), after=Sum("recommended_cost"),
                      priced=Count("current_cost")))
    cells = {}
    for row in rows:
        source = row["current_plan__code"] or UNKNOWN_PLAN
        # A cost before is known only when every SIM of the cell had one.
        before = row["before"] if row["priced"] == row["sims"] else None
        cells[(source, row["recommended_plan__code"])] = PlanMove(
            from_plan=source, to_plan=row["recommended_plan__code"], sims=row["sims"], cost_before=before,
            cost_after=row["after"])
    plans = sorted({p for key in cells for p in key}, key=lambda p: (p == UNKNOWN_PLAN, p))
    return MigrationMatrix(plans=plans, cells=cells)
