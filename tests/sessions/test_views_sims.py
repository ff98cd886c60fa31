"""The workbench's SIM list: every SIM of a session, filtered and sorted on the server, a page at a time, as CSV,
and where SIMs move (the plan-migration matrix); figures from the real pipeline's stored assignments."""
import csv
import datetime as dt
import io
import re

import pytest
from django.urls import reverse

from optimizer.models import DeviceAssignment
from rateplans.models import ServiceProvider
from sessions.models import OptimizationSession
from tests.module_data import alice_with_tenant_a, module_transaction


def rows_of(body: str) -> list[str]:
    """ICCIDs of the table's rows, in page order."""
    return re.findall(r'<tr class="[^"]*" data-iccid="(\d+)">', body)


@pytest.fixture(scope="module")
def _shared(django_db_setup, django_db_blocker, tmp_path_factory):
    """alice's account and a 90-SIM session the real pipeline ran, built once for this module (tests.module_data)."""
    from tests.factories_results import session_with_results

    with module_transaction(django_db_blocker, tmp_path_factory.mktemp("reports")):
        alice, tenant_a, provider_a = alice_with_tenant_a()
        session = session_with_results(provider=provider_a, groups=3, sims_per_group=30, seed=5)
        yield {"alice": alice, "tenant_a": tenant_a, "provider_a": provider_a, "session": session.pk}


# The shared user, tenant and account stand in for tests/conftest.py's (which would make them again).
@pytest.fixture
def alice(_shared, db):
    return _shared["alice"]


@pytest.fixture
def tenant_a(_shared, db):
    return _shared["tenant_a"]


@pytest.fixture
def provider_a(_shared, db):
    return ServiceProvider.objects.get(pk=_shared["provider_a"].pk)


@pytest.fixture
def session(_shared, db):
    return OptimizationSession.objects.get(pk=_shared["session"])  # a fresh copy: a test may change its own


def test_the_list_pages_through_every_sim_in_iccid_order(session, alice_client):
    url = reverse("dashboard:session-sims", args=[session.guid])
    stored = list(DeviceAssignment.objects.filter(run=session.run).order_by("iccid").values_list("iccid", flat=True))
    assert len(stored) == 90
    first, second = (alice_client.get(url, {"page": n}) for n in (1, 2))
    assert first.status_code == second.status_code == 200
    assert rows_of(first.content.decode()) + rows_of(second.content.decode()) == stored
    assert "90 SIMs · page 1 of 2" in first.content.decode()


def test_changed_only_largest_saving_first_matches_the_stored_rows(session, alice_client):
    url = reverse("dashboard:session-sims", args=[session.guid])
    body = alice_client.get(url, {"changed": "true", "sort": "-saving"}).content.decode()
    changed = DeviceAssignment.objects.filter(run=session.run, changed=True)
    expected = sorted(changed, key=lambda a: (-(a.current_cost - a.recommended_cost), a.iccid))
    assert 0 < len(expected) < 90, "the seeded fleet has some SIMs that move and some that stay"
    assert rows_of(body) == [a.iccid for a in expected][:50]
    top = expected[0]
    assert f"{top.current_cost - top.recommended_cost:,.2f}" in body


def test_the_form_as_a_browser_submits_it_leaves_empty_choices_unfiltered(session, alice_client):
    """'all groups', 'any plan' and an empty ICCID box come as empty values: no filter, not a 400."""
    url = reverse("dashboard:session-sims", args=[session.guid])
    response = alice_client.get(url, {"changed": "true", "group": "", "from_plan": "", "to_plan": "", "iccid": "",
                                      "sort": "-saving"})
    assert response.status_code == 200
    changed = DeviceAssignment.objects.filter(run=session.run, changed=True).count()
    assert f"{changed} SIM" in response.content.decode()


def test_filters_by_group_move_and_iccid_prefix(session, alice_client):
    url = reverse("dashboard:session-sims", args=[session.guid])
    rows = DeviceAssignment.objects.filter(run=session.run).select_related("current_plan", "recommended_plan")
    group = rows.first().comm_group_id
    assert set(rows_of(alice_client.get(url, {"group": group}).content.decode())) == {
        a.iccid for a in rows if a.comm_group_id == group}
    moved = next(a for a in rows if a.changed)
    move = {"from_plan": moved.current_plan.code, "to_plan": moved.recommended_plan.code}
    assert set(rows_of(alice_client.get(url, move).content.decode())) == {
        a.iccid for a in rows if a.current_plan == moved.current_plan and a.recommended_plan == moved.recommended_plan}
    prefix = moved.iccid[:-1]
    assert set(rows_of(alice_client.get(url, {"iccid": prefix}).content.decode())) == {
        a.iccid for a in rows if a.iccid.startswith(prefix)}


def test_a_bad_filter_is_a_400_naming_the_field(session, alice_client):
    url = reverse("dashboard:session-sims", args=[session.guid])
    response = alice_client.get(url, {"iccid": "89x", "sort": "price"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "<strong>iccid</strong>: An ICCID is digits only." in body and "<strong>sort</strong>" in body
    assert rows_of(body) == [] and 'id="sim-filters"' in body  # no list that ignores the filter; the form stays
    assert alice_client.get(reverse("dashboard:session-sims-csv", args=[session.guid]), {"group": "0"}).status_code == 400


def test_an_unknown_customer_is_a_404_naming_it_and_lists_no_sim(session, alice_client):
    """As the API answers: a customer id the user has none of is not found (404), named by its field; the page
    keeps the filters that were fine and links to the list without the bad one."""
    url = reverse("dashboard:session-sims", args=[session.guid])
    group = session.run.comm_groups.order_by("pk").first()
    response = alice_client.get(url, {"customer": "987654321", "changed": "true", "group": group.pk})
    assert response.status_code == 404
    body = response.content.decode()
    assert "<strong>customer</strong>: No customer 987654321 among your tenant&#x27;s customers." in body
    assert rows_of(body) == [] and 'id="sim-count"' not in body
    assert 'name="changed" value="true" checked' in body and f'<option value="{group.pk}" selected>' in body
    assert f'id="without-errors" href="?changed=true&amp;group={group.pk}"' in body
    assert alice_client.get(url, {"changed": "true", "group": group.pk}).status_code == 200
    csv_url = reverse("dashboard:session-sims-csv", args=[session.guid])
    assert alice_client.get(csv_url, {"customer": "987654321"}).status_code == 404
    # Any other bad value with it is a 400, as in the API.
    assert alice_client.get(url, {"customer": "987654321", "iccid": "89x"}).status_code == 400
    assert alice_client.get(csv_url, {"customer": "x"}).status_code == 400


def test_csv_export_holds_exactly_the_filtered_rows(session, alice_client):
    response = alice_client.get(reverse("dashboard:session-sims-csv", args=[session.guid]), {"changed": "true"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f"session-{session.guid}-sims.csv" in response["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    changed = DeviceAssignment.objects.filter(run=session.run, changed=True).select_related(
        "current_plan", "recommended_plan", "comm_group").order_by("iccid")
    assert [r["iccid"] for r in table] == [a.iccid for a in changed]
    for row, a in zip(table, changed, strict=True):
        assert (row["current_plan"], row["recommended_plan"], row["group"]) == (
            a.current_plan.code, a.recommended_plan.code, a.comm_group.name)
        assert (float(row["current_cost"]), float(row["recommended_cost"]), float(row["saving"])) == pytest.approx(
            (float(a.current_cost), float(a.recommended_cost), float(a.current_cost - a.recommended_cost)))
        assert row["changed"] == "yes"


def test_migration_matrix_counts_every_sim_once_and_links_to_its_sims(session, alice_client):
    body = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    matrix = body.split('id="migration-matrix"')[1].split("</table>")[0]
    counts = [int(n) for n in re.findall(r'to_plan=[^"]*">(\d+)</a>', matrix)]
    assert sum(counts) == 90
    moved = DeviceAssignment.objects.filter(run=session.run, changed=True).select_related(
        "current_plan", "recommended_plan").first()
    link = (f"?from_plan={moved.current_plan.code}&amp;to_plan={moved.recommended_plan.code}")
    n = DeviceAssignment.objects.filter(run=session.run, current_plan=moved.current_plan,
                                        recommended_plan=moved.recommended_plan).count()
    assert f'{link}">{n}</a>' in matrix


def test_someone_elses_session_is_404_and_the_list_needs_a_login(session, client, bob, tenant_b):
    urls = [reverse(name, args=[session.guid]) for name in ("dashboard:session-sims", "dashboard:session-sims-csv")]
    for url in urls:
        assert client.get(url).status_code == 302
    client.force_login(bob)  # bob belongs to tenant B only
    for url in urls:
        assert client.get(url).status_code == 404


def test_a_page_costs_the_same_queries_for_any_number_of_sims(completed_session, provider_a, alice_client,
                                                            django_assert_max_num_queries):
    session = completed_session(provider=provider_a, groups=2, sims_per_group=40, seed=6)
    with django_assert_max_num_queries(12):
        assert alice_client.get(reverse("dashboard:session-sims", args=[session.guid])).status_code == 200


def test_account_page_shows_savings_per_cycle_from_the_last_completed_session_and_its_sessions(
        completed_session, provider_a, alice_client):
    first = completed_session(provider=provider_a, groups=1, sims_per_group=10, seed=8)
    latest = completed_session(provider=provider_a, groups=2, sims_per_group=10, seed=9)
    body = alice_client.get(reverse("dashboard:provider-detail", args=[provider_a.pk])).content.decode()
    assert '<svg id="cycle-chart"' in body
    cycles = body.split('id="cycles"')[1].split("</table>")[0]
    # Both ran in the current cycle: the later one speaks for it.
    assert cycles.count("<tr data-period=") == 1 and f"{latest.savings:,.2f}" in cycles
    listed = body.split('id="account-sessions"')[1]
    assert str(latest.guid) in listed and str(first.guid) in listed
    assert alice_client.get(reverse("dashboard:provider-detail", args=[provider_a.pk + 999])).status_code == 404


def test_stage_times_are_in_the_accounts_time_zone_in_plain_words(session, alice_client):
    session.provider.billing_timezone = "America/Chicago"
    session.provider.save()
    body = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    timings = body.split('id="timings"')[1].split("</table>")[0]
    visible = re.sub(r"<[^>]+>", "", timings)
    assert " CST" in visible and not re.search(r"\d{4}-\d\d-\d\dT\d\d", visible), "no raw ISO timestamps"
    assert re.search(r'<td class="num">\d+\.\d s</td>', timings)
    # The page says when the session ran and which cycle it priced, in words, in the same zone.
    tz = session.provider.tz
    when = re.sub(r"<[^>]+>", "", body.split('id="when">')[1].split("</span>")[0])
    assert f"started {session.created_at.astimezone(tz):%-d %b %Y, %H:%M} CST" in when
    assert session.finished_at and f"ended {session.finished_at.astimezone(tz):%-d %b %Y, %H:%M} CST (took " in when
    period = session.billing_period
    assert f"{period.start_date:%-d %b %Y} – {period.end_date:%-d %b %Y}</h1>" in body


def test_money_carries_the_accounts_currency_and_times_its_time_zone(session, alice_client):
    """Every amount the session, SIM, list and account pages show says its currency (a card or chart "1,234.56 EUR",
    a table column "(EUR)"); the session list and the SIM page give their moments in the account's zone."""
    provider = session.provider
    provider.currency, provider.billing_timezone = "EUR", "Europe/Berlin"
    provider.save()
    detail = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    for field in ("current_cost", "optimized_cost", "savings", "lower_bound"):
        assert re.search(f'data-field="{field}">{getattr(session, field):,.2f} EUR[ <]', detail), field
    assert "Current cost (EUR)</th>" in detail and 'aria-label="Cost per rate plan before and after optimization (EUR)"' in detail
    assert re.search(r"<title>[^<]+: [\d,]+\.\d\d EUR \(\d+ SIMs\)</title>", detail), "bar titles say the currency"

    moved = DeviceAssignment.objects.filter(run=session.run, changed=True).order_by("iccid").first()
    sim = alice_client.get(reverse("dashboard:session-sim", args=[session.guid, moved.iccid])).content.decode()
    assert f'data-field="cost_before">{moved.current_cost:,.2f} EUR<' in sim
    assert f'data-field="saving">{moved.current_cost - moved.recommended_cost:,.2f} EUR<' in sim
    assert "Monthly (EUR)</th>" in sim
    listing = alice_client.get(reverse("dashboard:session-sims", args=[session.guid])).content.decode()
    assert "Cost before (EUR)</th>" in listing and "Saving (EUR)</th>" in listing
    account = alice_client.get(reverse("dashboard:provider-detail", args=[provider.pk])).content.decode()
    assert "Savings (EUR)</th>" in account and "amounts in EUR" in account

    sessions = alice_client.get(reverse("dashboard:session-list")).content.decode()
    row = sessions.split(f'data-guid="{session.guid}"')[1].split("</tr>")[0]
    assert f"{session.savings:,.2f} EUR" in row
    started = session.created_at.astimezone(provider.tz)
    assert f'{started:%-d %b %Y, %H:%M} {started.tzname()}</time>' in row, "the account's zone, in words"


def test_an_account_currency_is_an_iso_code(provider_a):
    from django.core.exceptions import ValidationError

    provider_a.currency = "euro"
    with pytest.raises(ValidationError) as error:
        provider_a.full_clean()
    assert "ISO 4217" in str(error.value.message_dict["currency"])


def test_the_session_and_usage_pages_sum_a_finished_runs_rows_once(session, alice_client):
    """Finalize keeps the sums the session and usage pages show on the run; the pages then read no row of the
    run for them, and read them afresh when the run finished again or the catalogue's allowances changed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from optimizer.models import OptimizationRun

    run = OptimizationRun.objects.get(pk=session.run_id)
    assert set(run.sums) == {"plan_moves", "usage"} and all(
        v["basis"]["finished_at"] == run.finished_at.isoformat() for v in run.sums.values())
    detail_url = reverse("dashboard:session-detail", args=[session.guid])
    usage_url = reverse("dashboard:session-usage", args=[session.guid])

    def page(url):
        with CaptureQueriesContext(connection) as queries:
            body = alice_client.get(url).content.decode()
        summed = [q["sql"] for q in queries.captured_queries
                  if "optimizer_deviceassignment" in q["sql"] and "GROUP BY" in q["sql"]]
        return body, summed

    detail, summed = page(detail_url)
    assert summed == [] and '<svg id="plan-chart"' in detail
    usage, summed = page(usage_url)
    assert summed == [] and 'class="bin"' in usage
    matrix = detail.split('id="migration-matrix"')[1].split("</table>")[0]

    # Finalize ran again and one SIM is gone: the kept sums are not those of the rows any more.
    gone = DeviceAssignment.objects.filter(run=session.run).order_by("iccid").first()
    gone.delete()
    OptimizationRun.objects.filter(pk=run.pk).update(finished_at=run.finished_at + dt.timedelta(seconds=1))
    detail_again, summed = page(detail_url)
    assert len(summed) == 1
    assert detail_again.split('id="migration-matrix"')[1].split("</table>")[0] != matrix
    assert page(detail_url)[1] == []  # kept again
    # A plan of the catalogue with a new allowance: the usage bins are counted again between the new edges.
    plan = session.provider.rate_plans.order_by("pk").first()
    plan.included_mb += 1
    plan.save()
    usage_again, summed = page(usage_url)
    assert summed and usage_again != usage


def test_the_list_counts_changes_and_moves_from_the_kept_sums_as_the_rows_would(session, alice_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("dashboard:session-sims", args=[session.guid])
    rows = DeviceAssignment.objects.filter(run=session.run)
    moved = rows.filter(changed=True).select_related("current_plan", "recommended_plan").first()
    kept = rows.filter(changed=False).select_related("current_plan").first()
    cases = [
        ({}, rows),
        ({"changed": "true", "sort": "-saving"}, rows.filter(changed=True)),
        ({"changed": "false"}, rows.filter(changed=False)),
        ({"from_plan": moved.current_plan.code, "to_plan": moved.recommended_plan.code},
         rows.filter(current_plan=moved.current_plan, recommended_plan=moved.recommended_plan)),
        ({"from_plan": kept.current_plan.code, "changed": "true"},
         rows.filter(current_plan=kept.current_plan, changed=True)),
        ({"to_plan": kept.current_plan.code, "changed": "false"},
         rows.filter(recommended_plan=kept.current_plan, changed=False)),
        ({"from_plan": "NO-SUCH-PLAN"}, rows.none()),
    ]
    for params, expected in cases:
        with CaptureQueriesContext(connection) as queries:
            body = alice_client.get(url, params).content.decode()
        n = expected.count()
        assert f">{n} SIM{'' if n == 1 else 's'}" in body, (params, n)
        assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"]], params
        with CaptureQueriesContext(connection) as queries:
            listed = alice_client.get(reverse("api:session-assignments", args=[session.guid]), params).json()
        assert listed["count"] == n and not [q for q in queries.captured_queries if "COUNT(" in q["sql"]], params
    group = session.run.comm_groups.order_by("pk").first()
    with CaptureQueriesContext(connection) as queries:
        body = alice_client.get(url, {"group": group.pk, "changed": "true"}).content.decode()
    n = rows.filter(comm_group=group, changed=True).count()
    assert f">{n} SIMs" in body and [q for q in queries.captured_queries if "COUNT(" in q["sql"]]


def test_usage_page_counts_each_groups_sims_between_allowances_and_fills_pools_with_stored_usage(session, alice_client):
    from decimal import Decimal

    body = alice_client.get(reverse("dashboard:session-usage", args=[session.guid])).content.decode()
    rows = list(DeviceAssignment.objects.filter(run=session.run).select_related("recommended_plan"))
    edges = sorted(set(session.provider.rate_plans.values_list("included_mb", flat=True)))
    for group in session.run.comm_groups.all():
        section = body.split(f'id="group-{group.pk}"')[1].split("</section>")[0]
        bins = {label: int(n) for label, n in re.findall(r'class="bin" data-label="([^"]+)" data-sims="(\d+)"', section)}
        usages = [a.usage_mb for a in rows if a.comm_group_id == group.pk]
        assert sum(bins.values()) == len(usages) == group.device_count
        # The bin up to the smallest positive allowance holds exactly the SIMs that used some data but no more.
        smallest = next(e for e in edges if e > 0)
        label = f"≤ {smallest:g} MB" if smallest < 1024 else f"≤ {smallest / 1024:g} GB"
        assert bins[label] == sum(1 for u in usages if 0 < u <= smallest)
        assert bins["0 MB"] == sum(1 for u in usages if u <= 0)
        pooled = {}
        for a in rows:
            if a.comm_group_id == group.pk and a.recommended_plan.pooled:
                pooled.setdefault(a.recommended_plan.code, []).append(a)
        for code, members in pooled.items():
            row = section.split(f'<tr data-plan="{code}">')[1].split("</tr>")[0]
            usage = sum((a.usage_mb for a in members), Decimal(0))
            allowance = members[0].recommended_plan.included_mb * len(members)
            assert f'<td class="num">{len(members)}</td>' in row
            assert f"{usage:,.1f} MB" in row and f"{allowance:,.1f} MB" in row
    assert any(r.recommended_plan.pooled for r in rows), "the seeded fleet is recommended some pooled plans"
