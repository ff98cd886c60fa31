"""A whole session of an account whose shared plans pool account-wide (pooling=account), through the real
pipeline: one work item for the groups that share pools, the session's bound is the scope's, and the Mobility
report's group subtotals are each group's share, adding up to the session's cost."""

from openpyxl import load_workbook

from sessions.reports import report_open, report_write
from tests.sessions.test_reports import _money, _sheet_rows, _sum


def test_an_account_wide_mobility_session_reports_by_group_with_shared_pools(completed_session, provider_a):
    provider_a.portal_type = "Mobility"
    provider_a.pooling = "account"
    provider_a.save()
    session = completed_session(provider=provider_a, groups=3, sims_per_group=5, seed=9)
    run = session.run
    [item] = run.queues.all()
    assert len(item.scope) == 3
    groups = {g.name: g for g in run.comm_groups.all()}
    assert all(g.lower_bound is None for g in groups.values())
    assert session.lower_bound is not None and session.lower_bound <= session.optimized_cost
    assert sum(g.optimized_cost for g in groups.values()) == session.optimized_cost
    wb = load_workbook(report_open(report_write(session=session)))
    rows = _sheet_rows(wb, "Assignments by group")
    sims = [r for r in rows if r[1] and not str(r[0]).endswith("subtotal")]
    subtotals = [r for r in rows if str(r[0]).endswith("subtotal")]
    assert len(sims) == 15 and _sum(r[6] for r in sims) == _money(session.optimized_cost)
    for sub in subtotals:
        assert _money(sub[6]) == _money(groups[sub[0].removesuffix(" subtotal")].optimized_cost)
    summary = {r[0]: r[1] for r in _sheet_rows(wb, "Summary") if r and r[0]}
    assert _money(summary["Lower bound"]) == _money(session.lower_bound)
