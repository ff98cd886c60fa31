"""The Excel report of a session's answer (summary, groups, assignments) and the e-mail that carries it."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import pathlib
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import storages
from django.core.files.utils import validate_file_name
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Font

from carrieropt import xlsx
from carrieropt.money import CENT
from carrieropt.xlsx import EXCEL_MAX_TEXT, FORMULA_TRIGGERS, MONEY_FORMAT
from devices.models import Customer
from optimizer.assignments import run_plan_moves
from optimizer.engine.figures import CostFigures
from optimizer.models import CommGroup, DeviceAssignment, KeptReason
from optimizer.selectors import NO_PLAN, plan_costs
from rateplans.models import PortalType, RatePlan
from sessions.frontier import frontier_rows

log = logging.getLogger(__name__)

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXCEL_MAX_ROWS = 1_048_576
# Rows of data per assignment sheet (one row is the header); beyond it the next sheet starts.
ROWS_PER_SHEET = EXCEL_MAX_ROWS - 1
PERCENT_FORMAT = "0.00%"

ASSIGNMENT_HEADER = ["ICCID", "Group", "Current plan", "Recommended plan", "Usage MB", "Current cost",
                     "Recommended cost", "Savings", "Changed", "Notes", "Customer"]
GROUP_HEADER = ["Group", "Status", "Communication plans", "Rate plans allowed", "SIMs", "Current cost",
                "Baseline cost", "Optimized cost", "Savings", "Savings %", "Lower bound", "Gap", "Method",
                "Strategy", "Note"]
PLAN_HEADER = ["Rate plan", "SIMs before", "Cost before", "SIMs after", "Cost after"]
KEPT_NOTES = dict(KeptReason.choices)


def reports_storage():
    """Where reports live: STORAGES["reports"] (a folder under MEDIA_ROOT, or object storage)."""
    return storages["reports"]


def report_name(*, session) -> str:
    return f"device_assignments_{session.guid}.xlsx"


def _valid_name(name: str) -> bool:
    """A name inside the reports storage: relative, no '..' (an old absolute path is not one)."""
    if not name:
        return False
    try:
        validate_file_name(name, allow_relative_path=True)
    except SuspiciousFileOperation:
        return False
    return True


def report_exists(name: str) -> bool:
    return _valid_name(name) and reports_storage().exists(name)


def report_location(name: str) -> str:
    """Where a stored report is, for people: a path on this machine, or s3://bucket/key."""
    storage = reports_storage()
    try:
        return storage.path(name)
    except NotImplementedError:  # object storage has no local path
        key = "/".join(part for part in (getattr(storage, "location", ""), name) if part)
        return f"s3://{getattr(storage, 'bucket_name', '?')}/{key}"


def report_open(name: str):
    """The stored report as a binary file (streamed by whoever reads it), or None when there is none."""
    if not report_exists(name):
        return None
    return reports_storage().open(name, "rb")


def _local(value: dt.datetime | None, tz) -> str:
    return value.astimezone(tz).isoformat(timespec="seconds") if value else "never"


class _Sheet:
    """A write-only sheet that knows its row count and writes user text safely."""

    def __init__(self, workbook: Workbook, title: str, widths: dict[str, float] | None = None):
        self.ws = workbook.create_sheet(title)
        for column, width in (widths or {}).items():
            self.ws.column_dimensions[column].width = width
        self.rows = 0
        self.bold = Font(bold=True)

    def text(self, value):
        """User-supplied text: never a formula, never an illegal XML character, never over Excel's limit."""
        if value is None or not isinstance(value, str):
            return value
        value = ILLEGAL_CHARACTERS_RE.sub("", value)[:EXCEL_MAX_TEXT]
        if not value.startswith(FORMULA_TRIGGERS):
            return value
        cell = WriteOnlyCell(self.ws, value)
        # openpyxl makes "=..." a formula; force a plain string and mark it as typed text.
        cell.data_type = "s"
        cell.quotePrefix = True
        return cell

    def money(self, value: Decimal | None):
        if value is None:
            return None
        cell = WriteOnlyCell(self.ws, value)
        cell.number_format = MONEY_FORMAT
        return cell

    def percent(self, value: Decimal | None):
        if value is None:
            return None
        cell = WriteOnlyCell(self.ws, value)
        cell.number_format = PERCENT_FORMAT
        return cell

    def strong(self, value):
        cell = WriteOnlyCell(self.ws, value)
        cell.font = self.bold
        return cell

    def header(self, names: list[str]) -> None:
        self.append([self.strong(n) for n in names])

    def append(self, row: list) -> None:
        self.ws.append(row)
        self.rows += 1


def _write_summary(workbook: Workbook, session) -> None:
    provider, period, tz = session.provider, session.billing_period, session.provider.tz
    sheet = _Sheet(workbook, "Summary", {"A": 34, "B": 42, "C": 14, "D": 14, "E": 14})
    figures = session.figures
    sheet.append([sheet.strong("Optimization results")])
    facts = [
        ("Tenant", sheet.text(session.tenant.name)),
        ("Carrier account", sheet.text(provider.name)),
        ("Integration", provider.get_integration_display()),
        ("Portal type", provider.portal_type),
        ("Billing period", f"{period.start_date.isoformat()} to {period.end_date.isoformat()}"),
        ("Session", str(session.guid)),
        ("Optimization", session.get_scope_display()),
        *([("Customer", sheet.text(session.customer.name))] if session.customer_id else []),
        ("Method", session.get_method_display()),
        ("Charge type", session.get_charge_type_display()),
        ("Must beat current plans", "yes" if session.must_beat_current else "no"),
        ("Change budget (max SIMs changing plan)", "none" if session.max_changes is None else session.max_changes),
        ("Trigger", session.get_trigger_display()),
        ("Started by", sheet.text(session.started_by or "not recorded")),
        ("SIMs", session.device_count),
        ("SIMs with usage of the cycle", session.sims_with_usage),
        ("SIMs without usage data (kept on their plan, fixed charge only)", session.no_usage_count),
        ("Current cost", sheet.money(session.current_cost)),
        ("Baseline cost (closest included MB)", sheet.money(session.baseline_cost)),
        ("Optimized cost", sheet.money(session.optimized_cost)),
        ("Savings", sheet.money(figures.savings)),
        ("Savings %", sheet.percent(figures.savings_ratio)),
        ("Lower bound", sheet.money(session.lower_bound)),
        ("Gap (optimized above bound)", sheet.percent(figures.gap)),
        ("Started", _local(session.started_at, tz)),
        ("Finished", _local(session.finished_at or timezone.now(), tz)),
        ("Last device sync", _local(provider.last_device_sync_at, tz)),
        ("Last usage sync", _local(provider.last_usage_sync_at, tz)),
    ]
    for stage, timing in (session.stage_timings or {}).items():
        seconds = timing.get("seconds") if isinstance(timing, dict) else None
        facts.append((f"Stage {stage} (seconds)", seconds if seconds is not None else "running"))
    if session.warnings:
        facts.append(("Warning", sheet.text(session.warnings)))
    for label, value in facts:
        sheet.append([label, value])

    costs = plan_costs(run=session.run, moves=run_plan_moves(run=session.run))  # the sums finalize kept
    sheet.append([])
    sheet.append([sheet.strong("Cost per rate plan")])
    sheet.header(PLAN_HEADER)
    first = sheet.rows + 1
    for c in costs:
        sheet.append([sheet.text(c.code), c.sims_before, sheet.money(c.cost_before), c.sims_after,
                      sheet.money(c.cost_after)])
    last = sheet.rows
    known_before = [c.cost_before for c in costs if c.cost_before is not None]
    sheet.append([sheet.strong("Total"), sum(c.sims_before for c in costs),
                  sheet.money(sum(known_before, Decimal(0)) if len(known_before) == len(costs) else None),
                  sum(c.sims_after for c in costs), sheet.money(sum((c.cost_after for c in costs), Decimal(0)))])
    if costs:
        chart = BarChart()
        chart.type = "col"
        chart.title = "Cost per rate plan: before and after"
        chart.y_axis.title = "Cost"
        chart.x_axis.title = "Rate plan"
        chart.height, chart.width = 9, 18
        for column in (3, 5):  # "Cost before", "Cost after"
            chart.add_data(Reference(sheet.ws, min_col=column, min_row=first - 1, max_row=last), titles_from_data=True)
        chart.set_categories(Reference(sheet.ws, min_col=1, min_row=first, max_row=last))
        sheet.ws.add_chart(chart, "G2")


FRONTIER_HEADER = ["Max changes", "SIMs moved", "% of changes", "Cost", "Lower bound", "Gap", "Savings",
                   "% of savings", "Chosen budget"]


def _write_frontier(workbook: Workbook, session) -> None:
    """Savings versus changes: cost and proven bound per change budget, with a line chart of both."""
    rows = frontier_rows(session)
    sheet = _Sheet(workbook, "Savings vs changes", {"A": 14, "B": 12, "C": 12, "D": 16, "E": 16, "F": 10, "G": 16,
                                                    "H": 12, "I": 14})
    sheet.append([sheet.strong("Savings versus changes: the cheapest answer found with at most so many SIMs "
                               "changing plan, and the proven lower bound on any answer with that few changes")])
    sheet.header(FRONTIER_HEADER)
    first = sheet.rows + 1
    for r in rows:
        sheet.append([r.max_changes, r.changes, sheet.percent(None if r.changes_share is None else Decimal(str(r.changes_share))),
                      sheet.money(r.total_cost), sheet.money(r.lower_bound),
                      sheet.percent(None if r.gap is None else Decimal(str(r.gap))), sheet.money(r.savings),
                      sheet.percent(None if r.savings_share is None else Decimal(str(r.savings_share))),
                      "yes" if r.chosen else ""])
    last = sheet.rows
    if len(rows) >= 2:
        chart = LineChart()
        chart.title = "Cost and lower bound against the change budget"
        chart.y_axis.title = "Cost"
        chart.x_axis.title = "Max changes"
        chart.height, chart.width = 9, 18
        for column in (4, 5):  # "Cost", "Lower bound"
            chart.add_data(Reference(sheet.ws, min_col=column, min_row=first - 1, max_row=last), titles_from_data=True)
        chart.set_categories(Reference(sheet.ws, min_col=1, min_row=first, max_row=last))
        sheet.ws.add_chart(chart, "K2")


def _write_groups(workbook: Workbook, run) -> None:
    sheet = _Sheet(workbook, "Groups", {"A": 10, "B": 18, "C": 40, "D": 40, "N": 30, "O": 40})
    sheet.header(GROUP_HEADER)
    sheet.ws.freeze_panes = "A2"
    groups = list(run.comm_groups.prefetch_related("communication_plans", "rate_plans").order_by("name", "pk"))
    totals = {"sims": 0}
    for g in groups:
        figures = g.figures
        sheet.append([
            sheet.text(g.name), g.get_status_display(),
            sheet.text(", ".join(c.name for c in g.communication_plans.all())),
            sheet.text(", ".join(p.code for p in g.rate_plans.all())),
            g.device_count, sheet.money(g.current_cost), sheet.money(g.baseline_cost), sheet.money(g.optimized_cost),
            sheet.money(figures.savings), sheet.percent(figures.savings_ratio), sheet.money(g.lower_bound),
            sheet.percent(figures.gap), sheet.text(g.winning_method), sheet.text(g.winning_strategy), sheet.text(g.note),
        ])
        totals["sims"] += g.device_count

    def total(field):
        # Only groups that were priced (skipped groups have no figures) add up.
        values = [getattr(g, field) for g in groups if g.optimized_cost is not None]
        return None if any(v is None for v in values) else sum(values, Decimal(0))

    sheet.append([sheet.strong("Total"), "", "", "", totals["sims"], sheet.money(total("current_cost")),
                  sheet.money(total("baseline_cost")), sheet.money(total("optimized_cost"))])


def _assignment_rows(run, *, by_group: bool) -> Iterator[tuple]:
    order = ("comm_group__name", "comm_group_id", "iccid") if by_group else ("iccid", "pk")
    return (DeviceAssignment.objects.filter(run=run).order_by(*order)
            .values_list("iccid", "comm_group_id", "current_plan_id", "recommended_plan_id", "usage_mb",
                         "current_cost", "recommended_cost", "changed", "device__sim_notes", "kept_reason",
                         "customer__name")
            .iterator(chunk_size=5000))


def _notes(kept: str, notes: str) -> str:
    """A SIM row's Notes: why it kept its plan (when it did), then the SIM's own notes."""
    if kept:
        return f"{KEPT_NOTES.get(kept, kept)}; {notes}" if notes else KEPT_NOTES.get(kept, kept)
    return notes


# SIMs whose row text the database cannot write from the joined cells alone (a note, an ICCID that is not plain
# letters and digits, a kept reason without a label, a customer not of the account's tenant): their ICCID, Notes and
# Customer cells are made here and looked up by row id.
# Beyond this many the rows are written here instead (the cells would be a long parameter list).
SPECIAL_ROWS_MAX = 50_000
_ROWS_SQL = """
SELECT concat('<row r="', x.n, '">',
              -- || is NULL when a part is (no such cell), and concat skips a NULL
              '<c r="A' || x.n || '"' || NULLIF(COALESCE(%(special_iccids)s::jsonb ->> x.id::text,
                                                         ' t="inlineStr"><is><t>' || x.iccid || '</t></is></c>'), ''),
              '<c r="B' || x.n || '"' || NULLIF(%(groups)s::jsonb ->> x.comm_group_id::text, ''),
              '<c r="C' || x.n || '"' || NULLIF(COALESCE(%(plans)s::jsonb ->> x.current_plan_id::text, %(no_plan)s), ''),
              '<c r="D' || x.n || '"' || NULLIF(%(plans)s::jsonb ->> x.recommended_plan_id::text, ''),
              '<c r="E' || x.n || '"><v>' || x.usage_mb || '</v></c>',
              '<c r="F' || x.n || '" s="' || %(money)s || '"><v>' || x.current_cost || '</v></c>',
              '<c r="G' || x.n || '" s="' || %(money)s || '"><v>' || x.recommended_cost || '</v></c>',
              '<c r="H' || x.n || '" s="' || %(money)s || '"><v>' || x.saving || '</v></c>',
              '<c r="I' || x.n || '"' || CASE WHEN x.changed THEN %(yes)s ELSE %(no)s END,
              '<c r="J' || x.n || '"' || NULLIF(COALESCE(%(special_notes)s::jsonb ->> x.id::text,
                                                         %(kept)s::jsonb ->> x.kept_reason), ''),
              '<c r="K' || x.n || '"' || NULLIF(COALESCE(%(special_customers)s::jsonb ->> x.id::text,
                                                         %(customers)s::jsonb ->> x.customer_id::text), ''),
              '</row>')
FROM (SELECT a.id, a.iccid, a.comm_group_id, a.current_plan_id, a.recommended_plan_id, a.usage_mb, a.current_cost,
             a.recommended_cost, a.saving, a.changed, a.kept_reason, a.customer_id,
             row_number() OVER (ORDER BY a.iccid, a.id) - %(offset)s + 1 AS n
      FROM optimizer_deviceassignment a WHERE a.run_id = %(run)s) x
WHERE x.n BETWEEN 2 AND %(last)s
ORDER BY x.iccid, x.id"""
# Rows fetched from the server-side cursor at a time (about 5 MB of sheet XML).
ROWS_FETCHED = 10_000


class _DatabaseRows:
    """The M2M layout's SIM rows written by PostgreSQL (`_ROWS_SQL`, read through a server-side cursor a batch
    ahead): at 926k SIMs the report took 6.5-8.7 s instead of 15-17 s (load ~2). Every text cell in a row was
    made here by the code that makes the rows written here (`_Cells.body`), and looked up by the database; it
    writes the numbers as PostgreSQL prints numeric, which is how Python prints the Decimal (the same bytes:
    tests/sessions/test_reports.py)."""

    def __init__(self, run, special: list[tuple]):
        self.run, self.special = run, special

    @classmethod
    def prepare(cls, run) -> _DatabaseRows | None:
        """The writer for `run`, or None when its rows are to be written here (not PostgreSQL, too many notes)."""
        if connection.vendor != "postgresql":
            return None
        # (A customer of another tenant than the account's cannot be on a row; were one there, it is named too.)
        special = list(DeviceAssignment.objects.filter(run=run).filter(
            ~Q(device__sim_notes="") | ~Q(iccid__regex=r"^[0-9A-Za-z]+$")
            | (~Q(kept_reason="") & ~Q(kept_reason__in=list(KEPT_NOTES)))
            | (Q(customer__isnull=False) & ~Q(customer__tenant_id=run.provider.tenant_id))
        ).values_list("pk", "iccid", "kept_reason", "device__sim_notes", "customer__name")[:SPECIAL_ROWS_MAX + 1])
        return None if len(special) > SPECIAL_ROWS_MAX else cls(run, special)

    def render(self, index: int, cells: xlsx._Cells) -> Iterator[bytes]:
        """Sheet `index`'s rows (ROWS_PER_SHEET a sheet) as sheet XML, ROWS_FETCHED rows a chunk."""
        plans = RatePlan.objects.filter(provider_id=self.run.provider_id).values_list("pk", "code")
        groups = CommGroup.objects.filter(run=self.run).values_list("pk", "name")
        customers = Customer.objects.filter(tenant_id=self.run.provider.tenant_id).values_list("pk", "name")

        def cells_by_key(pairs) -> str:
            return json.dumps({str(key): cells.body(text) for key, text in pairs})

        params = {
            "run": self.run.pk, "offset": index * ROWS_PER_SHEET, "last": ROWS_PER_SHEET + 1, "money": cells.money,
            "yes": cells.body("yes"), "no": cells.body("no"), "groups": cells_by_key(groups),
            # A SIM without a current plan (or with one not of the account's) says so, as the rows written here.
            "plans": cells_by_key(plans), "no_plan": cells.body(NO_PLAN), "customers": cells_by_key(customers),
            "kept": cells_by_key((k, _notes(k, "")) for k in KEPT_NOTES),
            "special_iccids": cells_by_key((pk, iccid) for pk, iccid, *_ in self.special),
            "special_notes": cells_by_key((pk, _notes(kept, notes)) for pk, _, kept, notes, _ in self.special),
            "special_customers": cells_by_key((pk, customer or "") for pk, *_, customer in self.special),
        }
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(_ROWS_SQL, params)
            yield from _read_ahead(lambda: cursor.fetchmany(ROWS_FETCHED))


def _read_ahead(fetch: Callable[[], list[tuple[str]]]) -> Iterator[bytes]:
    """The batches of one-text rows `fetch` returns (until an empty one), joined, read by a thread a batch or two
    ahead of the caller: the database writes the next rows while this process compresses the last (neither
    holds the GIL). The thread uses the caller's cursor and nothing else; it stops when the caller does."""
    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set() and (rows := fetch()):
                batches.put("".join([row for row, in rows]).encode())
            batches.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            batches.put(exc)

    reader = threading.Thread(target=read, name="report-rows", daemon=True)
    reader.start()
    try:
        while (batch := batches.get()) is not None:
            if isinstance(batch, BaseException):
                raise batch
            yield batch
    finally:
        stop.set()
        while reader.is_alive():  # let a reader blocked on a full queue finish
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.1)
        reader.join()


class _AssignmentSheets:
    """The SIM-level rows, spread over as many sheets as Excel's row limit needs.

    The sheets are made with the workbook (header and a sample row); their rows are written into the saved
    file by carrieropt.xlsx.fill_sheets, which is what keeps a million-SIM report to seconds."""

    def __init__(self, workbook: Workbook, run, *, by_group: bool):
        self.run, self.by_group = run, by_group
        self.header = ["Group", "ICCID", *ASSIGNMENT_HEADER[2:]] if by_group else ASSIGNMENT_HEADER
        title = "Assignments by group" if by_group else "Assignments"
        assignments = DeviceAssignment.objects.filter(run=run)
        rows = assignments.count() + (assignments.values("comm_group_id").distinct().count() if by_group else 0)
        self.titles = [title if i == 0 else f"{title} {i + 1}" for i in range(max(1, -(-rows // ROWS_PER_SHEET)))]
        for name in self.titles:
            sheet = _Sheet(workbook, name, {"A": 22, "B": 22, "C": 22, "D": 22, "J": 40, "K": 28})
            sheet.header(self.header)
            sheet.ws.freeze_panes = "A2"
            sheet.append(xlsx.sample_row(sheet.ws))
        self.count, self.recommended_sum = 0, Decimal(0)

    def rows(self) -> Iterator[tuple[list, str]]:
        """(values, column kinds) per row; counts the SIM rows and sums their recommended cost on the way."""
        codes = dict(RatePlan.objects.filter(provider_id=self.run.provider_id).values_list("pk", "code"))
        groups = dict(CommGroup.objects.filter(run=self.run).values_list("pk", "name"))
        kinds = SIM_ROW_KINDS
        subtotal = None
        for iccid, group_id, current_id, recommended_id, usage, current, recommended, changed, notes, kept, customer \
                in _assignment_rows(self.run, by_group=self.by_group):
            notes = _notes(kept, notes)
            group = groups.get(group_id, "")
            if self.by_group and (subtotal is None or subtotal.group_id != group_id):
                if subtotal is not None:
                    yield subtotal.row()
                subtotal = _Subtotal(group_id, group)
            lead = [group, iccid] if self.by_group else [iccid, group]
            yield [*lead, codes.get(current_id, NO_PLAN), codes.get(recommended_id, ""), usage, current, recommended,
                   None if current is None else current - recommended, "yes" if changed else "no", notes,
                   customer or ""], kinds
            self.count += 1
            self.recommended_sum += recommended
            if subtotal is not None:
                subtotal.add(usage, current, recommended, changed)
        if subtotal is not None:
            yield subtotal.row()


# Group, ICCID (or ICCID, group), plans: text; usage: a number; costs and savings: money; changed, notes,
# customer: text.
SIM_ROW_KINDS = "ttttnmmmttt"
SUBTOTAL_KINDS = "btttnmmmttt"


@dataclass
class _Subtotal:
    group_id: int
    name: str
    sims: int = 0
    usage: Decimal = Decimal(0)
    current: Decimal | None = Decimal(0)
    recommended: Decimal = Decimal(0)
    changed: int = 0

    def add(self, usage, current, recommended, changed) -> None:
        self.sims += 1
        self.usage += usage or 0
        self.current = None if current is None or self.current is None else self.current + current
        self.recommended += recommended
        self.changed += int(changed)

    def row(self) -> tuple[list, str]:
        savings = CostFigures(self.current, self.recommended).savings
        return [f"{self.name} subtotal", f"{self.sims} SIMs", "", "", self.usage, self.current, self.recommended,
                savings, f"{self.changed} changed", "", ""], SUBTOTAL_KINDS


ACCOUNTS_HEADER = ["Carrier account", "Billing period end", "Status", "SIMs", "SIMs with usage", "Cost before",
                   "Cost after", "Savings", "Changes", "Whole fleet on this catalogue", "Cheapest for the fleet"]


def _write_accounts(workbook: Workbook, session) -> None:
    """Cross-provider: the customer's accounts side by side (sessions.crossprovider.comparison_build)."""
    comparison = session.comparison
    sheet = _Sheet(workbook, "Accounts", {"A": 34, "B": 16, "C": 12, "J": 26, "K": 20})
    sheet.append([sheet.strong(f"{session.customer.name}: each account's SIMs optimized on its own catalogue; the "
                               f"last columns price the whole fleet ({comparison['fleet_sims_priced']:,} of "
                               f"{comparison['fleet_sims']:,} SIMs with usage) on each catalogue, a comparison only "
                               f"(no SIM is moved between carriers)")])
    sheet.header(ACCOUNTS_HEADER)

    def money(value):
        return sheet.money(None if value is None else Decimal(value))

    for r in comparison["accounts"]:
        sheet.append([sheet.text(r["provider_name"]), r["billing_period_end"], r["status"], r["sims"],
                      r["sims_with_usage"], money(r["current_cost"]), money(r["optimized_cost"]), money(r["savings"]),
                      r["changes"], money(r["fleet_cost"]), "yes" if r["cheapest_for_fleet"] else ""])
    t = comparison["total"]
    sheet.append([sheet.strong("Total"), None, None, t["sims"], None, money(t["current_cost"]),
                  money(t["optimized_cost"]), money(t["savings"]), t["changes"], None, None])


def _write_no_usage(workbook: Workbook, session) -> None:
    """Every billable SIM without usage of the cycle: kept on its plan, not optimized."""
    sheet = _Sheet(workbook, "No usage data", {"A": 24})
    sheet.append([sheet.strong(f"{session.no_usage_count:,} SIMs without usage data for this cycle: kept on their "
                               f"current plan, not changes; their cost is the plan's fixed charge only (overage unknown)")])
    sheet.header(["ICCID"])
    for iccid in session.no_usage_iccids[:ROWS_PER_SHEET - 2]:
        sheet.append([sheet.text(iccid)])


def report_write(*, session, rows_by_database: bool = True) -> str:
    """Write the session's workbook (streamed: write-only mode) to the reports storage; return its name there.

    M2M accounts get one row per SIM sorted by ICCID; Mobility accounts get the SIMs
    laid out group by group with a subtotal per group. Beyond Excel's row limit the
    rows continue on the next sheet. On PostgreSQL the M2M rows are written by the database (_DatabaseRows;
    rows_by_database=False writes them here, the same bytes).
    """
    workbook = Workbook(write_only=True)
    _write_summary(workbook, session)
    if session.comparison:
        _write_accounts(workbook, session)
    _write_groups(workbook, session.run)
    assignments = _AssignmentSheets(workbook, session.run, by_group=session.provider.portal_type == PortalType.MOBILITY)
    if session.no_usage_iccids:
        _write_no_usage(workbook, session)
    if (session.run.frontier or {}).get("points"):
        _write_frontier(workbook, session)
    # Built in a local temporary file (openpyxl needs a seekable file; the big sheets are filled into the saved
    # file), then handed to the storage whole.
    with tempfile.TemporaryDirectory() as directory:
        tmp = pathlib.Path(directory) / "report.xlsx"
        workbook.save(tmp)
        database = _DatabaseRows.prepare(session.run) if rows_by_database and not assignments.by_group else None
        if database is not None:
            try:
                count = xlsx.fill_sheets_rendered(tmp, assignments.titles, database.render,
                                                  width=len(assignments.header))
            except Exception:  # noqa: BLE001 - the file is as it was (filled whole or not at all): rows written here
                log.exception("session %s: the database did not write the report's rows; writing them here",
                              session.guid)
                database = None
            else:
                # The rows are the stored ones: their sum is the run's kept plan moves' (no pass over them).
                recommended_sum = sum((m.cost_after for m in run_plan_moves(run=session.run)), Decimal(0))
        if database is None:
            xlsx.fill_sheets(tmp, assignments.titles, assignments.rows(), rows_per_sheet=ROWS_PER_SHEET,
                             width=len(assignments.header))
            count, recommended_sum = assignments.count, assignments.recommended_sum
        if session.optimized_cost is not None and abs(recommended_sum - session.optimized_cost) >= CENT / 2:
            log.warning("session %s: SIM rows sum to %s but the stored optimized cost is %s", session.guid,
                        recommended_sum, session.optimized_cost)
        with tmp.open("rb") as file:
            name = reports_storage().save(report_name(session=session), File(file))
    log.info("report for session %s: %d SIM rows -> %s", session.guid, count, name)
    return name


def _money_text(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value.quantize(CENT):,}"


def report_email(*, session, name: str) -> int:
    """Mail the report to the account's recipients and operations; returns how many messages were sent."""
    provider, period, tz = session.provider, session.billing_period, session.provider.tz
    recipients = provider.alert_recipients
    if not recipients:
        log.info("session %s: no report recipients configured; report not mailed", session.guid)
        return 0
    end = period.end_date
    figures = session.figures
    savings, gap, pct = figures.savings, figures.gap, figures.savings_ratio
    lines = [
        f"The rate plan optimization of {provider.name} ({session.tenant.name}) has finished.",
        "",
        f"Session: {session.guid}",
        f"Billing period: {period.start_date.isoformat()} to {end.isoformat()}",
        f"Start time: {_local(session.started_at, tz)}",
        f"End time: {_local(session.finished_at or timezone.now(), tz)}",
        f"Last device sync: {_local(provider.last_device_sync_at, tz)}",
        f"Last usage sync: {_local(provider.last_usage_sync_at, tz)}",
        f"Total SIM cards: {session.device_count:,}",
        f"SIMs with usage data: {session.sims_with_usage:,}",
        f"SIMs without usage data: {session.no_usage_count:,} (kept on their plans, cost at the fixed charge only; "
        f"listed in the report)" if session.no_usage_count else "SIMs without usage data: 0",
        "",
        f"Current cost: {_money_text(session.current_cost)}",
        f"Optimized cost: {_money_text(session.optimized_cost)}",
        f"Savings: {_money_text(savings)}" + (f" ({pct * 100:.2f} %)" if pct is not None else ""),
        f"Lower bound: {_money_text(session.lower_bound)}" + (f" (gap {gap * 100:.3f} %)" if gap is not None else ""),
        "",
    ]
    storage, filename = reports_storage(), pathlib.PurePosixPath(name).name
    size = storage.size(name)
    attach = size <= settings.REPORT_EMAIL_ATTACH_MAX_MB * 1_000_000
    if attach:
        lines.append(f"The device assignments are attached ({filename}).")
    else:
        page = settings.SITE_URL.rstrip("/") + reverse("dashboard:session-detail", args=[session.guid])
        lines.append(f"The device assignments ({filename}, {size / 1_000_000:,.1f} MB) are too large to attach "
                     f"(over {settings.REPORT_EMAIL_ATTACH_MAX_MB:g} MB): download them from the session's page, {page}")
    if session.warnings:
        lines += ["", f"Warning: {session.warnings}"]
    message = EmailMessage(
        subject=f"Optimization Results for Billing Period Ending on {end:%B} {end.day}, {end.year}",
        body="\n".join(lines), to=recipients,
    )
    if attach:
        with storage.open(name, "rb") as report:
            message.attach(filename, report.read(), XLSX_MIME)
    return message.send()
