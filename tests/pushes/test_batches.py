"""Sending a push's batches to the carrier simulator over loopback: exactly once, through failures, crashes, refusals and outages."""
import datetime as dt
import threading
import time

import httpx
import pytest
from django.core import mail

from carriers.simulator import Faults
from devices.models import CarrierCallCount, Device
from pushes import clients, lifecycle, resume
from pushes.batches import push_batch_run
from pushes.create import PlannedChange, push_create
from pushes.models import RatePlanChange, RatePlanPushBatch
from pushes.recommendations import session_apply, session_changes
from rateplans.models import Alert, RatePlan
from tests.pushes.helpers import api_changes, completed_session, fleet, mid_period, moves, puts

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


def test_600_changes_in_6_batches_with_10_percent_failures_are_each_applied_exactly_once(inline_tasks, simulator,
                                                                                           settings):
    # Six batches of 100 (the setting's 250 would make this minutes long): several batches, each chained to the next.
    settings.PUSH_BATCH_SIZE = 100
    server = simulator(sims=650, seed=21, faults=Faults(error_rate=0.10, hang_seconds=1))
    provider = fleet(server, devices=650, seed=21, max_concurrency=8)
    changes = moves(provider, 600)
    period, now = mid_period(provider)

    push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=now)
    push.refresh_from_db()

    assert push.decision == "go" and push.status == "succeeded", (push.status, push.error)
    assert push.applied == 600 and push.failed == push.rejected == push.discrepancies == 0
    assert RatePlanPushBatch.objects.filter(push=push).count() == 6
    assert not RatePlanPushBatch.objects.filter(push=push).exclude(status="done").exists()
    assert not RatePlanChange.objects.filter(push=push).exclude(status="applied", verified=True).exists()
    # The carrier's own change log: every SIM changed once, to its planned plan, none missed, none twice.
    changed = api_changes(server)
    assert set(changed) == {c.iccid for c in changes} and set(changed.values()) == {1}
    planned = {c.iccid: c.to_plan_code for c in changes}
    assert all(c["to"] == planned[c["iccid"]] for c in server.carrier.changes)
    # Failures really happened and were retried: a tenth of the calls failed, some PUTs were sent again.
    log = server.carrier.request_log()
    failed_calls = sum(1 for r in log if r["status"] >= 500 or r["status"] == 429 or r.get("throttled") or r["fault"])
    assert failed_calls > 0.07 * len(log), (failed_calls, len(log))
    sends = dict(RatePlanChange.objects.filter(push=push).values_list("iccid", "sends"))
    assert sum(1 for n in sends.values() if n > 1) > 0
    # Every PUT the carrier took up was recorded before it went. A recorded one it never saw ended on our side
    # (timed out or lost its connection before it was read: on a loaded machine, some are).
    took = puts(server)
    assert all(took[iccid] <= n for iccid, n in sends.items()) and set(took) <= set(sends)
    unanswered = sum(CarrierCallCount.objects.filter(provider=provider, endpoint="change_rate_plan",
                                                     outcome__in=["timeout", "connection_error"])
                     .values_list("calls", flat=True))
    assert 0 <= sum(sends.values()) - sum(took.values()) <= unanswered, (sum(sends.values()), sum(took.values()), unanswered)
    # The device table follows the carrier.
    by_device = dict(Device.objects.filter(pk__in=[c.device_id for c in changes]).values_list("pk", "rate_plan_code"))
    assert by_device == {c.device_id: c.to_plan_code for c in changes}
    assert push.measured_rate and push.measured_rate > 60
    report = [m for m in mail.outbox if m.subject.startswith("Rate plan update finished")]
    assert [m.subject for m in report] == ["Rate plan update finished for Acme Jasper (simulated): 600 applied, 0 need attention"]


def test_a_worker_killed_mid_batch_is_resumed_without_sending_any_change_twice(simulator, monkeypatch, inline_tasks,
                                                                                settings):
    from django_q.conf import Conf

    # A recorded PUT may still be on its way for 2 x 0.25 s (timeouts) + 1 s: the resumed worker waits that long.
    settings.PUSH_RESEND_MARGIN_SECONDS = 1.0
    server = simulator(sims=500, seed=22)
    provider = fleet(server, devices=500, seed=22)
    changes = moves(provider, 400)
    period, now = mid_period(provider)

    class Killed(BaseException):
        """Stands for SIGKILL: nothing after it runs, not even `except Exception`."""

    real_send, calls, numbers, late_puts = clients.send_plan, [], {}, []

    def late_put(iccid, plan):
        httpx.put(f"{server.url}/rws/api/v1/devices/{iccid}", json={"ratePlan": plan},
                  auth=(provider.username, provider.api_key), timeout=5)

    def crashing_send(client, iccid, plan):
        calls.append(iccid)
        numbers[len(calls)] = iccid
        if len(calls) == 39:
            # This PUT is still on its way when the worker dies: it reaches the carrier 0.6 s from now.
            late = threading.Timer(0.6, late_put, args=(iccid, plan))
            late.start()
            late_puts.append(late)
            time.sleep(0.3)
            return None, 0.3
        if len(calls) == 40:
            raise Killed  # dies after recording this PUT and before sending it
        return real_send(client, iccid, plan)

    monkeypatch.setattr(Conf, "SYNC", False)  # the first batch is run by hand, as the dying worker
    push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=now)
    first = RatePlanPushBatch.objects.get(push=push, number=1)
    monkeypatch.setattr(clients, "send_plan", crashing_send)
    with pytest.raises(Killed):
        push_batch_run(batch_id=first.pk)
    monkeypatch.setattr(clients, "send_plan", real_send)
    landed, lost = numbers[39], numbers[40]
    stuck = set(RatePlanChange.objects.filter(push=push, status="sending").values_list("iccid", flat=True))
    assert {landed, lost} <= stuck
    planned = {c.iccid: c for c in changes}
    assert server.carrier.device(landed)["ratePlan"] == planned[landed].from_plan_code, "not arrived yet"
    assert RatePlanPushBatch.objects.get(pk=first.pk).status == "running"

    # A duplicate delivery while the dead worker's lease holds does nothing.
    assert push_batch_run(batch_id=first.pk) == "not_ours"
    # The watchdog gives the expired lease back; the resumed batch first re-reads each stuck change.
    monkeypatch.setattr(Conf, "SYNC", True)
    queued = []
    later = RatePlanPushBatch.objects.get(pk=first.pk).lease_expires_at + dt.timedelta(seconds=1)
    report = resume.pushes_resume(now=later, enqueue=lambda func, *args: queued.append((func, args)))
    assert report["requeued_batches"] == 1 and queued == [(lifecycle.BATCH_TASK, (first.pk,))]
    assert push_batch_run(batch_id=first.pk) == "done"  # then batch 2 and the verification, inline
    late_puts[0].join()

    push.refresh_from_db()
    assert push.status == "succeeded", push.error
    changed = api_changes(server)
    assert set(changed) == {c.iccid for c in changes} and set(changed.values()) == {1}
    assert set(puts(server).values()) == {1}, "a PUT was sent twice"
    outcome = {c.iccid: (c.status, c.sends, c.attempts) for c in RatePlanChange.objects.filter(push=push)}
    # The late PUT was waited for and confirmed by the read; the one that never left was sent by the resumed worker.
    assert outcome[landed] == ("applied", 1, 1)
    assert outcome[lost] == ("applied", 2, 2)
    assert all(outcome[iccid][0] == "applied" for iccid in stuck)
    assert RatePlanPushBatch.objects.get(pk=first.pk).attempts == 2


def test_a_sim_changed_on_the_carrier_after_the_optimization_is_skipped_and_reported(inline_tasks, simulator):
    server = simulator(sims=400, seed=25)
    provider = fleet(server, devices=400, seed=25)
    session = completed_session(provider)
    planned = session_changes(session=session)
    assert len(planned) > 50
    by_hand, to_target = planned[3], planned[7]
    third = next(p.code for p in RatePlan.objects.filter(
        communication_plans__devices__pk=by_hand.device_id) if p.code not in (by_hand.from_plan_code, by_hand.to_plan_code))
    with httpx.Client(base_url=f"{server.url}/rws/api/v1", auth=(provider.username, provider.api_key)) as portal:
        for change, plan in ((by_hand, third), (to_target, to_target.to_plan_code)):
            assert portal.put(f"/devices/{change.iccid}", json={"ratePlan": plan}).status_code == 200
    server.carrier.clear_log()

    push = session_apply(session=session, trigger="test", applied_by="carol")
    push.refresh_from_db()

    assert push.status == "finished_with_errors" and push.discrepancies == 2
    assert push.applied == len(planned) - 2
    skipped = {c.iccid: c for c in RatePlanChange.objects.filter(push=push, status="discrepancy")}
    assert set(skipped) == {by_hand.iccid, to_target.iccid}
    assert skipped[by_hand.iccid].carrier_plan == third and third in skipped[by_hand.iccid].error
    assert "already shows the recommended plan" in skipped[to_target.iccid].error
    # Not overwritten: no PUT for either, and the carrier still shows the hand-made plans.
    sent = puts(server)
    assert by_hand.iccid not in sent and to_target.iccid not in sent and set(sent.values()) == {1}
    assert server.carrier.device(by_hand.iccid)["ratePlan"] == third
    assert Device.objects.get(pk=by_hand.device_id).rate_plan_code == third
    report = [m for m in mail.outbox if m.subject.startswith("Rate plan update finished")][-1]
    assert "2 need attention" in report.subject and by_hand.iccid in report.body and to_target.iccid in report.body
    assert "Applied by: carol." in report.body


def test_refusals_and_an_outage_are_reported_and_applying_again_sends_only_what_is_left(inline_tasks, simulator):
    server = simulator(sims=300, seed=26)
    provider = fleet(server, devices=300, seed=26)
    period, now = mid_period(provider)
    changes = moves(provider, 40)
    # Two SIMs asked onto a plan their communication plan does not allow: the carrier refuses.
    taken = {c.device_id for c in moves(provider, 60)}
    telemetry = [d for d in Device.objects.filter(provider=provider, communication_plan__name="CP-Telemetry-Low")
                 .order_by("iccid") if d.pk not in taken]
    big = RatePlan.objects.get(provider=provider, code="M2M-10GB")
    refused = [PlannedChange(device_id=d.pk, iccid=d.iccid, from_plan_id=d.rate_plan_id, from_plan_code=d.rate_plan_code,
                             to_plan_id=big.pk, to_plan_code=big.code) for d in telemetry[:2]]
    push = push_create(provider=provider, changes=changes + refused, period=period, now=now)
    push.refresh_from_db()
    assert push.status == "finished_with_errors" and push.rejected == 2 and push.applied == 40
    for change in RatePlanChange.objects.filter(push=push, status="rejected"):
        assert "is not available for communication plan" in change.error and "HTTP 400" in change.error

    server.carrier.faults.outage = True
    retry = push_create(provider=provider, changes=moves(provider, 60)[40:], period=period, now=now)
    retry.refresh_from_db()
    assert retry.status == "failed" and "circuit open" in retry.error
    assert retry.failed == 20 and retry.applied == 0
    report = [m for m in mail.outbox if m.subject.startswith("Rate plan update finished")][-1]
    assert "20 need attention" in report.subject and "Failed: 20" in report.body
    # Both pushes needed attention: each report is an alert (recorded, mailed once); the outage opened the breaker.
    alerts = {(a.kind, a.key) for a in Alert.objects.filter(provider=provider)}
    assert alerts == {("push_attention", f"{provider.pk}:push_attention:push:{push.pk}"),
                      ("push_attention", f"{provider.pk}:push_attention:push:{retry.pk}"),
                      ("breaker_open", f"{provider.pk}:breaker_open:account")}
    breaker = [m for m in mail.outbox if m.subject == f"Carrier calls of {provider.name} stopped: circuit breaker open"]
    assert len(breaker) == 1 and "circuit open after" in breaker[0].body and f"#{retry.pk}" in breaker[0].body

    server.carrier.faults.outage = False
    again = push_create(provider=provider, changes=moves(provider, 60)[40:], period=period, now=now)
    again.refresh_from_db()
    assert again.status == "succeeded" and again.applied == 20
    assert set(api_changes(server).values()) == {1} and len(api_changes(server)) == 60
