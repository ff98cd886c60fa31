"""A session's change budget and savings-versus-changes frontier: stored by finalize, each point's answer exactly
the prefix of moves its change_rank says (priced again here from the rows), shown in the API, the report and the
session page, chosen there or through the API, and the push sends only that budget's changes."""
import io
from decimal import Decimal

import numpy as np
import openpyxl
import pytest
from django.urls import reverse

from devices.demo import demo_seed
from optimizer import engine
from optimizer.models import CommGroup, DeviceAssignment
from optimizer.selectors import group_data
from pushes.recommendations import BudgetNotAPoint, session_changes
from sessions.models import OptimizationSession
from sessions.reports import report_open
from sessions.services import session_budget_set, session_start
from tests.conftest import use_report_folder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def account(tenant_a):
    provider = demo_seed(devices=160, seed=6).provider
    provider.tenant = tenant_a
    provider.save()
    return provider


@pytest.fixture
def reports(settings, tmp_path):
    use_report_folder(settings, tmp_path / "reports")


def run(provider, **options):
    session = session_start(provider=provider, sync_devices=False, **options)
    session = OptimizationSession.objects.select_related("run").get(pk=session.pk)
    assert session.status in ("succeeded", "succeeded_with_warnings"), session.error
    return session


def priced_at(session, changes: int) -> Decimal:
    """The session's cost when only the moves ranked below `changes` are made, priced from the stored rows
    and each group's data by the engine (the SIMs without usage at their stored fixed charge)."""
    total = 0.0
    for group in CommGroup.objects.filter(run=session.run):
        rows = DeviceAssignment.objects.filter(run=session.run, comm_group=group)
        if not rows.exists():
            continue
        data = group_data(group=group, charge_type=session.charge_type)
        index = {int(pk): i for i, pk in enumerate(data.plan_ids)}
        where = {int(d): i for i, d in enumerate(data.device_ids)}
        assignment = data.problem.current_plan.astype(np.int64).copy()
        for device_id, plan_id in rows.filter(change_rank__lt=changes).values_list("device_id", "recommended_plan_id"):
            assignment[where[device_id]] = index[plan_id]
        total += engine.price(data.problem, assignment).total if data.problem.n_sims else 0.0
        total += float(sum(rows.filter(usage_mb__isnull=True).values_list("recommended_cost", flat=True), Decimal(0)))
    return Decimal(total)


def test_finalize_stores_a_frontier_whose_points_recompute_from_the_ranked_rows(inline_tasks, account, reports):
    session = run(account)
    fr = session.run.frontier
    points = fr["points"]
    changed = DeviceAssignment.objects.filter(run=session.run, changed=True)
    assert fr["unconstrained_changes"] == changed.count() > 0
    assert 10 <= len(points) <= 20
    assert points[0]["max_changes"] == fr["forced"] and points[-1]["max_changes"] == changed.count()
    # Every change has a rank, each rank once; SIMs that keep their plan have none.
    ranks = sorted(changed.values_list("change_rank", flat=True))
    assert ranks == list(range(len(ranks)))
    assert not DeviceAssignment.objects.filter(run=session.run, changed=False, change_rank__isnull=False).exists()
    costs = [Decimal(p["total_cost"]) for p in points]
    bounds = [Decimal(p["lower_bound"]) for p in points]
    assert costs == sorted(costs, reverse=True) and bounds == sorted(bounds, reverse=True)
    for p, cost, bound in zip(points, costs, bounds, strict=True):
        assert p["changes"] <= p["max_changes"] and bound <= cost
        assert abs(priced_at(session, p["changes"]) - cost) < Decimal("0.001"), p
    # The ends: nothing changed is the current cost, every change the session's optimized cost.
    groups = CommGroup.objects.filter(run=session.run).count()
    if fr["forced"] == 0:
        assert abs(costs[0] - session.current_cost) <= Decimal("0.0001") * groups
    assert abs(costs[-1] - session.optimized_cost) <= Decimal("0.0001") * groups
    assert bounds[-1] >= session.lower_bound - Decimal("0.0001") * groups


def test_budget_at_start_is_a_point_and_the_push_takes_only_its_changes(inline_tasks, account, reports):
    session = run(account, max_changes=7)
    point = session.run.frontier_point(7)
    assert session.max_changes == 7 and point is not None and point["changes"] <= 7
    planned = session_changes(session=session)
    assert len(planned) == point["changes"] > 0
    ranked = set(DeviceAssignment.objects.filter(run=session.run, change_rank__lt=point["changes"])
                 .values_list("device_id", flat=True))
    assert {c.device_id for c in planned} == ranked
    # No budget: every change again; a budget that is no point is refused, by the API's service and the push.
    session_budget_set(session=session, max_changes=None)
    assert len(session_changes(session=session)) == session.run.frontier["unconstrained_changes"]
    with pytest.raises(Exception, match="not a point"):
        session_budget_set(session=session, max_changes=10**6)
    OptimizationSession.objects.filter(pk=session.pk).update(max_changes=10**6)
    session.refresh_from_db()
    with pytest.raises(BudgetNotAPoint):
        session_changes(session=session)


def test_account_default_budget_is_used_when_the_start_does_not_choose(inline_tasks, account, reports):
    account.default_max_changes = 3
    account.save()
    session = run(account)
    assert session.max_changes == 3 and session.run.frontier_point(3) is not None


def test_api_start_refuses_a_negative_budget_naming_the_field(api, account):
    response = api.post(reverse("api:session-list"), {"provider": account.pk, "sync_devices": False, "max_changes": -1},
                        content_type="application/json")
    assert response.status_code == 400
    assert "max_changes" in response.json()["error"]["fields"]
    assert not OptimizationSession.objects.filter(provider=account).exists()


def test_api_detail_has_the_frontier_and_the_budget_endpoint_chooses_a_point(inline_tasks, api, account, reports):
    response = api.post(reverse("api:session-list"), {"provider": account.pk, "sync_devices": False, "max_changes": 5},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    guid = response.json()["id"]
    body = api.get(reverse("api:session-detail", kwargs={"guid": guid})).json()
    assert body["max_changes"] == 5
    frontier = body["frontier"]
    assert [p["chosen"] for p in frontier].count(True) == 1
    chosen = next(p for p in frontier if p["chosen"])
    assert chosen["max_changes"] == 5 and Decimal(chosen["lower_bound"]) <= Decimal(chosen["total_cost"])
    assert Decimal(frontier[-1]["savings_share"]) == 1
    other = frontier[len(frontier) // 2]["max_changes"]
    url = reverse("api:session-budget", kwargs={"guid": guid})
    chose = api.post(url, {"max_changes": other}, content_type="application/json")
    assert chose.status_code == 200 and chose.json()["max_changes"] == other
    assert next(p for p in chose.json()["frontier"] if p["chosen"])["max_changes"] == other
    bad = api.post(url, {"max_changes": -2}, content_type="application/json")
    assert bad.status_code == 400 and "max_changes" in bad.json()["error"]["fields"]
    off = api.post(url, {"max_changes": other + 10**6}, content_type="application/json")
    assert off.status_code == 404 and "not a point" in off.content.decode()
    assert list(off.json()["error"]["fields"]) == ["max_changes"] and off.json()["error"]["budgets"]
    assert OptimizationSession.objects.get(guid=guid).max_changes == other


def test_session_page_charts_the_frontier_and_a_point_sets_the_budget(inline_tasks, alice_client, account, reports):
    session = run(account)
    page = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    assert 'id="frontier-chart"' in page and page.count('class="frontier-point') == len(session.run.frontier["points"])
    assert "No change budget" in page
    point = session.run.frontier["points"][2]
    response = alice_client.post(reverse("pushes:session-budget", args=[session.guid]),
                                 {"max_changes": str(point["max_changes"])})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.max_changes == point["max_changes"]
    page = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    assert f"at most {point['max_changes']} changes</strong>" in page
    apply = alice_client.get(reverse("pushes:session-apply", args=[session.guid])).content.decode()
    assert f'data-field="changes">{point["changes"]}<' in apply


def test_reader_cannot_choose_a_budget(inline_tasks, client, reader, account, reports):
    session = run(account)
    client.force_login(reader)
    client.post(reverse("pushes:session-budget", args=[session.guid]),
                {"max_changes": str(session.run.frontier["points"][1]["max_changes"])})
    session.refresh_from_db()
    assert session.max_changes is None


def test_report_has_a_frontier_sheet_with_a_chart(inline_tasks, account, reports):
    session = run(account, max_changes=4)
    with report_open(session.report_path) as fh:
        workbook = openpyxl.load_workbook(io.BytesIO(fh.read()))
    sheet = workbook["Savings vs changes"]
    rows = list(sheet.iter_rows(min_row=3, values_only=True))
    points = session.run.frontier["points"]
    assert [r[0] for r in rows] == [p["max_changes"] for p in points]
    assert [r[8] for r in rows].count("yes") == 1
    assert Decimal(str(rows[-1][3])).quantize(Decimal("0.0001")) == Decimal(points[-1]["total_cost"])
    assert len(sheet._charts) == 1


def test_optimize_command_takes_a_budget_and_refuses_a_negative_one(account):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="max_changes"):
        call_command("optimize", "--provider", str(account.pk), "--no-sync", "--max-changes", "-1", stdout=io.StringIO())
    call_command("optimize", "--provider", str(account.pk), "--no-sync", "--max-changes", "9", stdout=io.StringIO())
    assert OptimizationSession.objects.get(provider=account).max_changes == 9
