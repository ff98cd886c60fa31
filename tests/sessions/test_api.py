"""Sessions API: start (201/409), list, detail, cancel, events, groups, assignments and the report download."""
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from optimizer.models import CommGroup
from sessions.models import OptimizationSession
from sessions.reports import report_write
from tests.factories_results import OptimizationSessionFactory, ProgressEventFactory
from tests.report_storage import use_report_folder

ISO_WITH_ZONE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
DECIMAL = re.compile(r"^-?\d+\.\d{4}$")



@pytest.fixture
def finished(completed_session, provider_a):
    """Completed by the real pipeline; shown without its report until a test writes one."""
    return completed_session(provider=provider_a, groups=2, sims_per_group=4, report_path="")


def start(api, provider, **body):
    return api.post(reverse("api:session-list"), {"provider": provider.pk, **body}, content_type="application/json")


def test_start_answers_201_then_409_while_active(api, provider_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = start(api, provider_a, method="legacy", sync_devices=False)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending" and body["percentage"] == 0 and body["method"] == "legacy"
    assert body["trigger"] == "api" and body["sync_devices"] is False
    assert len(callbacks) >= 1, "the first stage is queued on commit"
    session = OptimizationSession.objects.get(guid=body["id"])

    refused = start(api, provider_a)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "session_active"
    assert error["active_session"] == str(session.guid)
    assert "has not been completed" in error["message"]
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1


def test_start_for_another_tenants_account_is_refused_without_a_session(api, provider_b):
    response = start(api, provider_b)
    assert response.status_code == 404  # the account does not exist for this caller
    assert list(response.json()["error"]["fields"]) == ["provider"]
    assert not OptimizationSession.objects.filter(provider=provider_b).exists()


def test_start_validates_its_body(api, provider_a):
    response = start(api, provider_a, method="genetic")
    assert response.status_code == 400
    assert "method" in response.json()["error"]["fields"]


def test_detail_has_status_stage_percentage_timings_totals_bound_and_gap(api, finished):
    body = api.get(reverse("api:session-detail", kwargs={"guid": finished.guid})).json()
    assert body["id"] == str(finished.guid) and body["session_id"] == finished.pk
    assert (body["status"], body["stage"], body["percentage"]) == ("succeeded", "complete", 100)
    assert body["stage_timings"]["start"]["seconds"] == finished.stage_timings["start"]["seconds"]
    for field in ("current_cost", "baseline_cost", "optimized_cost", "lower_bound", "savings"):
        assert DECIMAL.match(body[field]), (field, body[field])
    assert Decimal(body["current_cost"]) == finished.current_cost
    assert Decimal(body["optimized_cost"]) == finished.optimized_cost
    assert Decimal(body["savings"]) == finished.current_cost - finished.optimized_cost
    assert Decimal(body["gap"]) == round(finished.gap, 6)
    assert ISO_WITH_ZONE.match(body["created_at"]) and ISO_WITH_ZONE.match(body["finished_at"])
    assert body["billing_period"]["end_date"] == finished.billing_period.end_date.isoformat()
    assert body["report_url"] is None


def test_list_filters_and_keeps_its_query_count(api, completed_session, provider_a, django_assert_max_num_queries):
    for i in range(6):
        completed_session(provider=provider_a, groups=1, sims_per_group=1, status="failed" if i % 2 else "succeeded")
    # token, count, page with provider and billing period joined: not one query per session.
    with django_assert_max_num_queries(3):
        body = api.get(reverse("api:session-list")).json()
    assert body["count"] == 6
    body = api.get(reverse("api:session-list"), {"status": "failed"}).json()
    assert body["count"] == 3 and {s["status"] for s in body["results"]} == {"failed"}
    assert api.get(reverse("api:session-list"), {"status": "bogus"}).status_code == 400


def test_cancel_then_cancel_again_is_a_conflict(api, provider_a):
    guid = start(api, provider_a).json()["id"]
    url = reverse("api:session-cancel", kwargs={"guid": guid})
    response = api.post(url)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = api.post(url)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    # Cancelled: the account is free for a new start.
    assert start(api, provider_a).status_code == 201


def test_events_come_in_sequence(api, finished):
    recorded = finished.events.count()  # by the pipeline, 0 % to 100 %
    for progress in (100, 50, 90):
        ProgressEventFactory(session=finished, progress=progress)
    body = api.get(reverse("api:session-events", kwargs={"guid": finished.guid}), {"page_size": 100}).json()
    sequences = [e["sequence"] for e in body["results"]]
    assert sequences == sorted(sequences) and len(sequences) == recorded + 3
    assert [e["progress"] for e in body["results"][-3:]] == [100, 50, 90], "in sequence, not by progress"
    assert ISO_WITH_ZONE.match(body["results"][0]["created_at"])


def test_groups_carry_their_figures(api, finished, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        body = api.get(reverse("api:session-groups", kwargs={"guid": finished.guid})).json()
    assert [g["name"] for g in body["results"]] == ["G1", "G2"]
    total = sum(Decimal(g["optimized_cost"]) for g in body["results"])
    assert total == finished.optimized_cost
    group = body["results"][0]
    stored = finished.run.comm_groups.get(name="G1")
    assert [Decimal(g["optimized_cost"]) for g in body["results"]] == list(
        finished.run.comm_groups.order_by("name").values_list("optimized_cost", flat=True))
    assert len(group["rate_plans"]) == stored.rate_plans.count() > 1 and group["communication_plans"][0]["name"].startswith("CP-")
    assert Decimal(group["savings"]) == Decimal(group["current_cost"]) - Decimal(group["optimized_cost"])


def test_assignments_paginate_and_filter_by_group_and_changed(api, completed_session, provider_a,
                                                              django_assert_max_num_queries):
    session = completed_session(provider=provider_a, groups=2, sims_per_group=30, seed=3)
    url = reverse("api:session-assignments", kwargs={"guid": session.guid})
    with django_assert_max_num_queries(4):
        page = api.get(url, {"page_size": 25}).json()
    assert page["count"] == 60 and len(page["results"]) == 25 and page["next"]
    iccids = [a["iccid"] for a in page["results"]]
    assert iccids == sorted(iccids)

    group = session.run.comm_groups.get(name="G2")
    body = api.get(url, {"group": group.pk, "page_size": 100}).json()
    assert body["count"] == 30 and {a["group_name"] for a in body["results"]} == {"G2"}

    changed = api.get(url, {"changed": "true", "page_size": 100}).json()
    expected = session.run.assignments.filter(changed=True).count()
    assert 0 < expected < 60
    assert changed["count"] == expected and all(a["changed"] for a in changed["results"])
    assert api.get(url, {"changed": "false"}).json()["count"] == 60 - expected
    row = changed["results"][0]
    assert row["current_plan"] != row["recommended_plan"]
    assert Decimal(row["savings"]) == Decimal(row["current_cost"]) - Decimal(row["recommended_cost"])
    assert api.get(url, {"group": "x"}).status_code == 400
    assert api.get(url, {"page": 99}).status_code == 404


def test_assignments_sort_by_saving_and_filter_by_move_and_iccid(api, completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=2, sims_per_group=30, seed=3)
    url = reverse("api:session-assignments", kwargs={"guid": session.guid})
    body = api.get(url, {"changed": "true", "sort": "-saving", "page_size": 100}).json()
    savings = [Decimal(a["savings"]) for a in body["results"]]
    assert savings == sorted(savings, reverse=True) and len(savings) == body["count"] > 1
    top = body["results"][0]
    move = api.get(url, {"from_plan": top["current_plan"], "to_plan": top["recommended_plan"], "page_size": 100}).json()
    assert move["count"] == session.run.assignments.filter(
        current_plan__code=top["current_plan"], recommended_plan__code=top["recommended_plan"]).count()
    assert {(a["current_plan"], a["recommended_plan"]) for a in move["results"]} == {
        (top["current_plan"], top["recommended_plan"])}
    found = api.get(url, {"iccid": top["iccid"]}).json()
    assert [a["iccid"] for a in found["results"]] == [top["iccid"]]
    bad = api.get(url, {"sort": "cost", "iccid": "89-1"})
    assert bad.status_code == 400 and {"sort", "iccid"} <= set(bad.json()["error"]["fields"])


def test_report_download(api, finished, settings, tmp_path):
    url = reverse("api:session-report", kwargs={"guid": finished.guid})
    missing = api.get(url)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    use_report_folder(settings, tmp_path)
    finished.report_path = report_write(session=finished)
    finished.save()
    response = api.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert f"device_assignments_{finished.guid}.xlsx" in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == (tmp_path / finished.report_path).read_bytes()
    detail = api.get(reverse("api:session-detail", kwargs={"guid": finished.guid})).json()
    assert detail["report_url"].endswith(url)


def test_a_stored_name_outside_the_reports_storage_is_never_served(api, finished, settings, tmp_path):
    use_report_folder(settings, tmp_path / "reports")
    outside = tmp_path / "secret.xlsx"
    outside.write_bytes(b"not yours")
    for name in (str(outside), "../secret.xlsx", "reports/../../secret.xlsx"):
        finished.report_path = name
        finished.save()
        assert api.get(reverse("api:session-report", kwargs={"guid": finished.guid})).status_code == 404, name


# -- query counts of the lists: the same for 3 rows as for 30 --------------------------------------------------

def test_session_list_queries_do_not_grow_with_the_sessions(list_queries, completed_session, provider_a):
    url = reverse("api:session-list")
    period = completed_session(provider=provider_a, groups=1, sims_per_group=2).billing_period
    for _ in range(2):
        OptimizationSessionFactory(provider=provider_a, billing_period=period)
    few = list_queries(url)
    for _ in range(27):
        OptimizationSessionFactory(provider=provider_a, billing_period=period)
    many = list_queries(url)
    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0] <= 3, (few, many)  # token, count, page with provider and billing period joined


def test_event_list_queries_do_not_grow_with_the_events(list_queries, finished):
    url = reverse("api:session-events", kwargs={"guid": finished.guid})
    recorded = finished.events.count()
    few = list_queries(url)
    for _ in range(27):
        ProgressEventFactory(session=finished, progress=100)
    many = list_queries(url)
    assert (few[1], many[1]) == (recorded, recorded + 27)
    assert few[0] == many[0] <= 4, (few, many)  # token, session, count, page


def test_group_list_queries_do_not_grow_with_the_groups(list_queries, completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=3, sims_per_group=2)
    url = reverse("api:session-groups", kwargs={"guid": session.guid})
    few = list_queries(url)
    # 27 more groups like the pipeline's first one (a run this wide needs 27 more catalogues).
    model = session.run.comm_groups.get(name="G1")
    for i in range(27):
        group = CommGroup.objects.create(
            run=session.run, name=f"G{i + 4}", plan_key=f"copy-{i}", status=model.status,
            device_count=model.device_count, current_cost=model.current_cost, baseline_cost=model.baseline_cost,
            optimized_cost=model.optimized_cost, lower_bound=model.lower_bound, winning_method=model.winning_method)
        group.communication_plans.set(model.communication_plans.all())
        group.rate_plans.set(model.rate_plans.all())
    many = list_queries(url)
    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0] <= 6, (few, many)  # token, session, count, page, communication plans, rate plans


def test_assignment_list_queries_do_not_grow_with_the_sims(list_queries, completed_session, provider_a):
    few_session = completed_session(provider=provider_a, groups=1, sims_per_group=3)
    many_session = completed_session(provider=provider_a, groups=1, sims_per_group=30)
    few = list_queries(reverse("api:session-assignments", kwargs={"guid": few_session.guid}))
    many = list_queries(reverse("api:session-assignments", kwargs={"guid": many_session.guid}))
    assert (few[1], many[1]) == (3, 30)
    assert few[0] == many[0] <= 4, (few, many)  # token, session, count, page with group and plans joined


def test_assignment_filters_refuse_what_the_schema_refuses(api, completed_session, provider_a):
    session = completed_session(provider=provider_a, groups=1, sims_per_group=2)
    url = reverse("api:session-assignments", kwargs={"guid": session.guid})
    for params in [{"changed": "null"}, {"changed": "1"}, {"iccid": "Jn"}, {"group": "0"}]:
        response = api.get(url, params)
        assert response.status_code == 400 and list(response.json()["error"]["fields"]) == list(params), params
    assert api.get(url, {"changed": "true"}).status_code == 200
    assert api.get(url, {"changed": ""}).json()["count"] == 2
    schema = {p["name"]: p["schema"] for p in api.get("/api/schema/", {"format": "json"}).json()["paths"][
        "/api/sessions/{guid}/assignments/"]["get"]["parameters"]}
    assert schema["iccid"]["pattern"] == r"^\d*$" and schema["changed"]["type"] == "boolean"
