"""Realized savings: a session on the simulator, its cycle ends, the next sync reads the final usage, and the
session shows what its recommendation actually saved, priced here again independently by the cost model."""
import contextlib
import datetime as dt
import io
import math
import time
import types
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse

from carrieropt.money import cents
from carriers import BYTES_PER_MB
from carriers.simulator import fleet as demo_fleet
from devices.final_usage import final_usage_sync
from devices.models import Device, DeviceUsage, SyncRun
from devices.testing import fast_client
from optimizer.models import DeviceAssignment, RunRealized
from rateplans.models import RatePlan
from rateplans.services import billing_period_current
from sessions.management.commands.sync_final_usage import _when
from sessions.models import OptimizationSession
from sessions.realized import final_usage_check
from sessions.services import session_start
from tests.pushes.helpers import fleet

pytestmark = pytest.mark.django_db(transaction=True)  # the stages run on commit (inline_tasks)

SIMS, SEED = 240, 23


def cycle_over(period, days=2):
    """A moment `days` days into the next cycle."""
    return period.ends_at() + dt.timedelta(days=days)


def put_plans(server, plans: dict[str, str]):
    """Change SIMs' plans at the carrier (iccid -> plan), through its API."""
    with httpx.Client(base_url=f"{server.url}/rws/api/v1", auth=(demo_fleet.DEMO_USERNAME, demo_fleet.DEMO_API_KEY),
                      timeout=5) as c:
        for iccid, plan in plans.items():
            assert c.put(f"/devices/{iccid}", json={"ratePlan": plan}).status_code == 200


def blocks(x, b):
    return math.ceil(x / b - 1e-9) if x > 0 else 0


def independent_cost(sims, plans, days_in_cycle):
    """shared/spec/cost-model.md, written out SIM by SIM: sims = [(group, plan code, usage MB, days_active)]."""
    total = 0.0
    pools = defaultdict(lambda: [0.0, 0.0])  # (group, plan) -> [usage, allowance]
    for group, code, usage, days in sims:
        p = plans[code]
        f = days / days_in_cycle
        total += f * float(p.monthly_cost) + float(p.fee_per_sim)
        if p.pooled:
            pools[(group, code)][0] += usage
            pools[(group, code)][1] += f * float(p.included_mb)
        else:
            total += float(p.overage_rate) * blocks(usage - f * float(p.included_mb), float(p.overage_block_mb))
    for (_, code), (usage, allowance) in pools.items():
        p = plans[code]
        total += float(p.overage_rate) * blocks(usage - allowance, float(p.overage_block_mb))
    return total


def days_billed(device, period, tz):
    first = period.start_date
    if device.date_activated is not None:
        first = max(first, device.date_activated.astimezone(tz).date())
    last = period.end_date
    if device.status in ("DEACTIVATED", "RETIRED") and device.deactivated_at is not None:
        last = min(last, device.deactivated_at.astimezone(tz).date())
    return max(0, (last - first).days + 1)


@pytest.fixture
def ended_session(inline_tasks, carrier_simulator_factory, tenant_a):
    with contextlib.ExitStack() as stack:
        yield _ended_session(stack, carrier_simulator_factory, tenant_a)


def _ended_session(stack, carrier_simulator_factory, tenant_a):
    """A session synced from the simulator, half its changes applied at the carrier and one SIM moved elsewhere,
    then the cycle over: the simulator's clock two days into the next cycle."""
    moment = [time.time()]
    server = carrier_simulator_factory(sims=SIMS, seed=SEED, clock=lambda: moment[0])
    provider = fleet(server, devices=SIMS, seed=SEED, tenant=tenant_a)
    # The session runs in the optimization window (six days before the cycle ends), as the schedule runs it,
    # whatever today is: on a cycle's first days the projection of a day or two of usage decides the answer,
    # and what it saves would depend on the day the suite runs. Both clocks, ours and the carrier's, move there.
    window = billing_period_current(provider=provider).ends_at() - dt.timedelta(days=6)
    if window.timestamp() > time.time():
        stack.enter_context(time_machine.travel(window, tick=True))
        moment[0] = time.time()
    # seed_demo's own usage rows are fresh, and a session only tops up stale usage: without them the session's
    # usage is what the simulator's carrier answers.
    DeviceUsage.objects.filter(device__provider=provider).delete()
    session = session_start(provider=provider)  # device sync, usage sync, optimization: the real pipeline
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status in ("succeeded", "succeeded_with_warnings"), session.error
    changed = list(DeviceAssignment.objects.filter(run=session.run, changed=True).order_by("iccid")
                   .select_related("recommended_plan"))
    assert len(changed) >= 10
    applied = changed[::2]
    kept = DeviceAssignment.objects.filter(run=session.run, changed=False, kept_reason="").select_related(
        "device__communication_plan").order_by("iccid").first()
    elsewhere = next(p.code for p in kept.device.communication_plan.rate_plans.order_by("code")
                     if p.pk != kept.current_plan_id)
    # The carrier confirmed half the recommended changes (the others were never sent), and someone moved one more
    # SIM in the carrier's portal.
    put_plans(server, {**{a.iccid: a.recommended_plan.code for a in applied}, kept.iccid: elsewhere})
    over = cycle_over(session.billing_period)
    moment[0] = over.timestamp()
    return server, provider, session, over, {a.iccid for a in applied}, kept.iccid


def test_final_usage_of_the_ended_cycle_gives_realized_savings_priced_by_the_cost_model(ended_session):
    server, provider, session, over, applied, moved_elsewhere = ended_session
    carrier = server.carrier
    period = session.billing_period
    no_final = sorted(a for a in DeviceAssignment.objects.filter(run=session.run).values_list("iccid", flat=True)
                      if a not in applied and a != moved_elsewhere)[3]
    carrier.faults.usage_refused = frozenset({no_final})  # the carrier has lost this SIM's usage since
    carrier.clear_log()  # the session's own usage calls are not this sync's

    run = final_usage_sync(provider=provider, now=over)

    assert run.status == "succeeded" and run.kind == "final_usage", run.error
    assert run.rejected == 1 and run.rejects[0]["iccid"] == no_final
    # Usage by rate plan pages the non-shared plans; shared (pooled) ones are asked SIM by SIM.
    pooled = set(RatePlan.objects.filter(provider=provider, pooled=True).values_list("code", flat=True))
    usage_in_zone = [r for r in carrier.request_log("/rws/api/v1/devices/") if r["path"].endswith("/usageInZone")]
    paged = carrier.request_log("/rws/api/v1/usages")
    assert paged and all(r["query"]["cycleStartDate"] == period.start_date.isoformat() for r in paged)
    assert all(r["query"]["cycleStartDate"] == f"{period.start_date.isoformat()}Z" for r in usage_in_zone)
    assert not {r["query"]["ratePlanName"] for r in paged} & pooled

    realized = RunRealized.objects.get(run=session.run)
    assignments = list(DeviceAssignment.objects.filter(run=session.run).select_related("device", "comm_group"))
    plans = {p.code: p for p in RatePlan.objects.filter(provider=provider)}
    plan_code = {p.pk: p.code for p in plans.values()}
    end_ms = int(period.ends_at().timestamp() * 1000) - 1
    before, after, projected, final = [], [], 0.0, 0.0
    for a in assignments:
        if a.iccid == no_final:
            continue
        i = carrier.index[a.iccid]
        usage = round(math.floor(carrier.cycle_usage_mb[i] * BYTES_PER_MB) / BYTES_PER_MB, 3)  # the whole cycle
        days = days_billed(a.device, period, provider.tz)
        before.append((a.comm_group.name, plan_code[a.current_plan_id], usage, days))
        after.append((a.comm_group.name, carrier.plan_at(i, end_ms), usage, days))
        if a.usage_mb is not None:
            projected += float(a.usage_mb)
            final += usage
    cost_before = independent_cost(before, plans, period.days_in_cycle)
    cost_after = independent_cost(after, plans, period.days_in_cycle)

    assert (realized.sims, realized.priced, realized.missing) == (len(assignments), len(assignments) - 1, 1)
    assert realized.missing_sims == [{"iccid": no_final, "group": realized.missing_sims[0]["group"],
                                      "reason": "no final usage reported by the carrier"}]
    assert float(realized.cost_before) == pytest.approx(cost_before, abs=1e-3)
    assert float(realized.cost_after) == pytest.approx(cost_after, abs=1e-3)
    assert realized.figures.savings == realized.cost_before - realized.cost_after > 0
    # Half the recommended changes were made, and one change nobody recommended.
    assert realized.changes_followed == len(applied) and realized.changes_made == len(applied) + 1
    assert float(realized.projected_mb) == pytest.approx(projected, abs=0.01)
    assert float(realized.final_mb) == pytest.approx(final, abs=0.01)
    # The simulator's SIMs do not use data evenly through a cycle: the projection misses, and not by rounding.
    assert abs(realized.projection_error) > Decimal("0.02")
    assert sum(g["priced"] for g in realized.groups) == realized.priced
    assert sum(Decimal(g["cost_after"]) for g in realized.groups) == pytest.approx(realized.cost_after, abs=Decimal("0.001"))
    errors = [g["projection_error"] for g in realized.groups if g["projection_error"] is not None]
    assert len(errors) >= 2 and max(errors) - min(errors) > 0.02  # groups miss by different amounts

    # The stored rows of the cycle keep what the session priced and gain the final usage and plan.
    row = DeviceUsage.objects.get(device__iccid=moved_elsewhere, billing_period=period)
    assert row.final_rate_plan_code == carrier.plan_at(carrier.index[moved_elsewhere], end_ms)
    assert row.projected_mb != row.final_mb and row.final_synced_at is not None
    assert not DeviceUsage.objects.filter(device__iccid=no_final, billing_period=period, final_synced_at__isnull=False).exists()


def test_a_broken_carrier_page_during_the_final_usage_read_keeps_every_stored_row(ended_session):
    server, provider, session, over, _, _ = ended_session
    period = session.billing_period
    assert final_usage_sync(provider=provider, now=over).status == "succeeded"
    columns = ("device_id", "ctd_bytes", "usage_mb", "projected_mb", "usage_date", "final_bytes", "final_mb",
               "final_rate_plan_code", "final_synced_at")
    stored = sorted(DeviceUsage.objects.filter(billing_period=period).values_list(*columns))
    realized = RunRealized.objects.get(run=session.run)
    # The third page of usage by rate plan is truncated JSON, however often it is asked for.
    server.carrier.faults.script.extend(["ok", "ok"] + ["malformed"] * 20)

    with fast_client(provider) as client:
        run = final_usage_sync(provider=provider, now=over, client=client)

    assert run.status == "failed" and "not valid JSON" in run.error and run.error.endswith("DeviceUsage unchanged.")
    assert sorted(DeviceUsage.objects.filter(billing_period=period).values_list(*columns)) == stored
    assert RunRealized.objects.get(run=session.run).computed_at == realized.computed_at


def test_the_hourly_check_reads_an_ended_cycle_once_after_the_delay_and_never_a_running_one(ended_session, settings):
    _, provider, session, over, _, _ = ended_session
    settings.FINAL_USAGE_DELAY_HOURS = 72
    assert final_usage_check(now=over) == []  # two days after the end: not yet
    assert final_usage_sync(provider=provider, period=session.billing_period,
                            now=session.billing_period.ends_at() - dt.timedelta(hours=1)).status == "failed"
    assert not RunRealized.objects.exists()
    later = over + dt.timedelta(days=2)
    runs = final_usage_check(now=later)
    assert [r.status for r in runs] == ["succeeded"] and RunRealized.objects.filter(run=session.run).exists()
    assert final_usage_check(now=later + dt.timedelta(hours=1)) == []  # read once
    assert SyncRun.objects.filter(kind="final_usage", status="succeeded").count() == 1
    assert Device.objects.filter(provider=provider).exists()


def test_the_api_the_session_page_and_the_account_page_show_the_realized_savings(ended_session, api, alice_client):
    server, provider, session, over, _, _ = ended_session
    detail = f"/api/sessions/{session.guid}/"
    assert api.get(detail).json()["realized"] is None  # before the final usage is read
    page = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    assert 'id="realized"' in page and "once the billing cycle has ended" in page

    with fast_client(provider) as client:
        assert final_usage_sync(provider=provider, now=over, client=client).status == "succeeded"
    realized = RunRealized.objects.get(run=session.run)

    body = api.get(detail).json()["realized"]
    assert Decimal(body["cost_before"]) == realized.cost_before and Decimal(body["cost_after"]) == realized.cost_after
    assert Decimal(body["savings"]) == realized.cost_before - realized.cost_after
    assert Decimal(body["projection_error"]) == pytest.approx(realized.projection_error, abs=Decimal("1e-6"))
    assert (body["priced"], body["missing"], body["missing_sims"]) == (realized.priced, realized.missing, [])
    assert [g["name"] for g in body["groups"]] == [g["name"] for g in realized.groups]
    assert {g["name"]: Decimal(g["cost_after"]) for g in body["groups"]} == {
        g["name"]: Decimal(g["cost_after"]) for g in realized.groups}
    listed = api.get("/api/sessions/", {"provider": provider.pk}).json()["results"]
    assert listed[0]["realized"]["cost_after"] == body["cost_after"]

    page = alice_client.get(reverse("dashboard:session-detail", args=[session.guid])).content.decode()
    savings = cents(realized.cost_before - realized.cost_after)  # shown to the cent, half up
    assert 'id="realized-groups"' in page and f"{savings:,.2f}" in page
    assert f"{(realized.projection_error * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} %" in page
    account = alice_client.get(reverse("dashboard:provider-detail", args=[provider.pk])).content.decode()
    assert 'id="realized-chart"' in account and f"{savings:,.2f}" in account


def test_the_command_reads_the_final_usage_and_prints_the_realized_savings(ended_session):
    _, provider, session, over, _, _ = ended_session
    out = io.StringIO()
    call_command("sync_final_usage", provider=provider.pk, as_of=over.isoformat(), stdout=out)
    realized = RunRealized.objects.get(run=session.run)
    text = out.getvalue()
    assert f"Final usage of {session.billing_period}" in text
    assert f"realized savings {realized.figures.savings:,.2f}" in text and "projection error" in text
    # It says when the session ran: this one in the optimization window, as the schedule runs them.
    period = session.billing_period
    day = (session.started_at.astimezone(provider.tz).date() - period.start_date).days + 1
    assert f"It ran on day {day} of the cycle's {period.days_in_cycle}, inside the optimization window." in text
    early = types.SimpleNamespace(started_at=period.starts_at() + dt.timedelta(days=2, hours=5), provider=provider)
    assert _when(early, period) == (
        f" It ran on day 3 of the cycle's {period.days_in_cycle}, before the optimization window (its last 8 days): "
        "its projection scaled the usage of the cycle's first 3 day(s) to the whole cycle.")
    with pytest.raises(CommandError, match="has not ended yet"):
        call_command("sync_final_usage", provider=provider.pk, period_end=session.billing_period.end_date.isoformat(),
                     as_of=(session.billing_period.ends_at() - dt.timedelta(hours=1)).isoformat(), stdout=out)


def test_a_final_usage_run_taken_over_writes_nothing(ended_session, settings):
    _, provider, session, over, _, _ = ended_session
    settings.STAGE_HEARTBEAT_SECONDS = 0  # every beat checks the claim

    def take_over(progress):  # another worker declares this run dead after its first page
        SyncRun.objects.filter(kind="final_usage", status="running").update(status="failed", error="taken over by a test")

    with fast_client(provider) as client:
        run = final_usage_sync(provider=provider, now=over, client=client, progress=take_over)
    assert (run.status, run.error) == ("failed", "taken over by a test")
    assert not DeviceUsage.objects.filter(billing_period=session.billing_period, final_synced_at__isnull=False).exists()
    assert not RunRealized.objects.exists()
