"""Per-session options: method, charge type and "must beat current plans", chosen at every start (API, dashboard,
admin, command; the schedule takes the account's defaults), stored on the session and shown with its results."""
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from openpyxl import load_workbook

from optimizer.models import CommGroup, DeviceAssignment
from rateplans.models import RatePlan
from sessions.models import OptimizationSession
from sessions.reports import report_open, report_write
from tests.factories_results import fleet_seed, session_run


def start(api, provider, **body):
    return api.post(reverse("api:session-list"), {"provider": provider.pk, **body}, content_type="application/json")


def test_an_unknown_charge_type_is_a_400_naming_the_field_and_nothing_is_started(api, provider_a):
    response = start(api, provider_a, charge_type="tax")
    assert response.status_code == 400
    assert "charge_type" in response.json()["error"]["fields"]
    assert not OptimizationSession.objects.exists()


def test_absent_options_are_the_accounts_defaults_and_given_ones_win(api, provider_a):
    provider_a.default_method, provider_a.default_charge_type, provider_a.default_must_beat_current = "legacy", "rate", True
    provider_a.save()
    body = start(api, provider_a, sync_devices=False).json()
    assert (body["method"], body["charge_type"], body["must_beat_current"]) == ("legacy", "rate", True)
    session = OptimizationSession.objects.get(guid=body["id"])
    assert (session.run.method, session.run.charge_type, session.run.must_beat_current) == ("legacy", "rate", True)
    OptimizationSession.objects.filter(pk=session.pk).update(status="cancelled")

    body = start(api, provider_a, method="certified", charge_type="overage", must_beat_current=False).json()
    assert (body["method"], body["charge_type"], body["must_beat_current"]) == ("certified", "overage", False)
    detail = api.get(reverse("api:session-detail", kwargs={"guid": body["id"]})).json()
    assert (detail["charge_type"], detail["must_beat_current"]) == ("overage", False)


def test_the_account_api_reads_and_writes_the_defaults(api, provider_a):
    url = reverse("api:provider-detail", kwargs={"pk": provider_a.pk})
    response = api.patch(url, {"default_charge_type": "overage", "default_must_beat_current": True},
                         content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["default_charge_type"] == "overage" and response.json()["default_must_beat_current"] is True
    bad = api.patch(url, {"default_charge_type": "tax"}, content_type="application/json")
    assert bad.status_code == 400 and "default_charge_type" in bad.json()["error"]["fields"]


def test_rate_only_sessions_count_no_overage_and_pick_the_cheapest_charge(completed_session, provider_a, settings):
    session = completed_session(provider=provider_a, groups=2, sims_per_group=6, charge_type="rate")
    assert session.charge_type == "rate" and session.run.charge_type == "rate"
    rows = list(DeviceAssignment.objects.filter(run=session.run).select_related("recommended_plan", "current_plan",
                                                                               "comm_group"))
    assert len(rows) == 12
    charge = {p.pk: p.monthly_cost + p.fee_per_sim for p in RatePlan.objects.filter(provider=provider_a)}
    for row in rows:
        cheapest = min(charge[p.pk] for p in row.comm_group.rate_plans.all())
        assert row.recommended_cost == charge[row.recommended_plan_id] == cheapest, row.iccid
        assert row.current_cost == charge[row.current_plan_id], "the current cost counts no overage either"
    assert session.optimized_cost == sum(r.recommended_cost for r in rows)
    assert session.current_cost == sum(r.current_cost for r in rows)

    both = session_run(provider=provider_a, charge_type="both")
    assert both.optimized_cost > session.optimized_cost, "the same SIMs with overage counted cost more"

    wb = load_workbook(report_open(report_write(session=session)))
    summary = {row[0]: row[1] for row in wb["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["Charge type"] == "Rate charge only" and summary["Must beat current plans"] == "no"
    additional = json.loads(session.events.order_by("sequence").last().payload["data"]["AdditionalJson"])["data"]
    assert (additional["ChargeType"], additional["SkipLowerCostCheck"], additional["Method"]) == ("rate", True, "certified")


def _current_plan_nobody_may_choose(provider, devices):
    """Every SIM of the first group sits on a free plan its communication plan no longer allows: the current
    plans cannot compete (they are not an allowed answer), yet cost less than any answer."""
    legacy = RatePlan.objects.create(provider=provider, code="GRANDFATHERED-0", monthly_cost=Decimal(0),
                                     included_mb=Decimal(100_000), overage_rate=Decimal("0.01"),
                                     overage_block_mb=Decimal(1))
    first = [d for d in devices if d.communication_plan_id == devices[0].communication_plan_id]
    for device in first:
        device.rate_plan, device.rate_plan_code = legacy, legacy.code
        device.save(update_fields=["rate_plan", "rate_plan_code"])
    return first


@pytest.mark.parametrize("must_beat", [False, True])
def test_must_beat_current_keeps_a_group_whose_answer_is_not_cheaper(completed_session, provider_a, must_beat):
    devices = fleet_seed(provider=provider_a, groups=2, sims_per_group=5)
    kept = _current_plan_nobody_may_choose(provider_a, devices)
    session = session_run(provider=provider_a, must_beat_current=must_beat)
    assert session.must_beat_current is must_beat
    group = CommGroup.objects.get(run=session.run, assignments__device=kept[0])
    rows = DeviceAssignment.objects.filter(run=session.run, comm_group=group)
    assert group.current_cost == 0
    if must_beat:
        assert not rows.filter(changed=True).exists(), "no SIM of the group moves"
        assert group.optimized_cost == group.current_cost == 0 and group.winning_method == "current"
        assert "Kept current plans" in group.note and "not below the current 0.00" in group.note
        assert group.lower_bound <= group.optimized_cost
    else:
        assert rows.filter(changed=True).count() == len(kept), "without the check the group moves to allowed plans"
        assert group.optimized_cost > group.current_cost
    other = CommGroup.objects.filter(run=session.run).exclude(pk=group.pk).get()
    assert other.note == "", "a group whose current plans compete is decided as before"


def test_dashboard_start_chooses_the_options_preset_to_the_defaults(alice_client, provider_a):
    provider_a.default_charge_type = "overage"
    provider_a.save()
    page = alice_client.get(reverse("dashboard:session-list")).content.decode()
    assert '<option value="overage" selected>' in page
    url = reverse("dashboard:session-start", args=[provider_a.pk])
    alice_client.post(url, {"options": "1", "method": "legacy", "charge_type": "rate", "must_beat_current": "on"})
    session = OptimizationSession.objects.get(provider=provider_a)
    assert (session.method, session.charge_type, session.must_beat_current) == ("legacy", "rate", True)
    shown = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    assert "Rate charge only" in shown and "must beat current plans" in shown
    OptimizationSession.objects.filter(pk=session.pk).update(status="cancelled")

    refused = alice_client.post(url, {"options": "1", "charge_type": "tax"})
    assert refused.status_code == 400 and "charge_type: &#x27;tax&#x27; is not one of both, rate, overage" in refused.content.decode()
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 1


def test_admin_start_asks_for_the_options_first(root_client, provider_a):
    url = reverse("admin:rateplans_serviceprovider_changelist")
    data = {"action": "start_optimization_session", "_selected_action": [provider_a.pk]}
    page = root_client.post(url, data)
    assert page.status_code == 200 and 'id="start-session-options"' in page.content.decode()
    assert not OptimizationSession.objects.exists(), "nothing starts before the options are chosen"
    done = root_client.post(url, {**data, "start": "Start", "method": "", "charge_type": "overage",
                                  "must_beat_current": "yes", "sync_devices": "on"}, follow=True)
    session = OptimizationSession.objects.get(provider=provider_a)
    assert (session.method, session.charge_type, session.must_beat_current) == ("certified", "overage", True)
    assert "Overage only" in done.content.decode()


def test_optimize_command_takes_the_options(provider_a):
    out = io.StringIO()
    call_command("optimize", "--provider", str(provider_a.pk), "--charge-type", "overage", "--must-beat-current",
                 "--no-sync", stdout=out)
    session = OptimizationSession.objects.get(provider=provider_a)
    assert (session.charge_type, session.must_beat_current, session.trigger) == ("overage", True, "manual")
    assert "charge type overage, must beat current plans" in out.getvalue()


def test_the_schedule_runs_with_the_accounts_defaults(provider_a):
    from sessions.models import Trigger
    from sessions.services import session_start

    provider_a.default_method, provider_a.default_charge_type = "legacy", "overage"
    provider_a.save()
    session = session_start(provider=provider_a, trigger=Trigger.SCHEDULED)
    assert (session.method, session.charge_type, session.must_beat_current) == ("legacy", "overage", False)


def test_the_charge_types_offered_are_the_engines():
    from carrieropt.options import ChargeType
    from optimizer.engine.model import CHARGE_TYPES

    assert tuple(ChargeType.values) == CHARGE_TYPES
