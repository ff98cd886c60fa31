"""The verification read: sends whose answer was lost are settled, SIMs the carrier no longer shows are reported."""

import pytest
from django.core import mail

from carriers.simulator.carrier import SimResponse
from devices.models import Device
from pushes import verify
from pushes.batches import push_batch_run
from pushes.create import push_create
from pushes.models import RatePlanChange, RatePlanPushBatch
from pushes.recommendations import session_apply, session_changes
from tests.pushes.helpers import NO_COMMITS, api_changes, completed_session, fleet, mid_period, moves, puts

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits


@pytest.mark.parametrize("outage_during_verification", [False, True])
def test_sends_whose_answer_was_lost_before_an_outage_stopped_the_push_are_settled_by_reading_back(
        simulator, monkeypatch, outage_during_verification):
    from django_q.conf import Conf

    server = simulator(sims=300, seed=27)
    provider = fleet(server, devices=300, seed=27)
    monkeypatch.setattr(Conf, "SYNC", True)
    session = completed_session(provider)
    monkeypatch.setattr(Conf, "SYNC", False)  # the push's tasks are run by hand below, step by step
    planned = sorted(session_changes(session=session), key=lambda c: c.iccid)
    assert len(planned) > 20
    # The first four SIMs are sent at once (max_concurrency=4): their PUTs land but every answer is lost (a
    # timeout), and then the carrier goes down, so the reads after them fail until the circuit opens.
    lost = {c.iccid for c in planned[:4]}
    carrier, edit, waiting = server.carrier, server.carrier._edit_device, set(lost)

    def lands_but_the_answer_is_lost(i, body):
        response = edit(i, body)
        if carrier.iccids[i] not in waiting:
            return response
        waiting.discard(carrier.iccids[i])
        if not waiting:
            carrier.faults.outage = True
        return SimResponse(504, b'{"errorMessage":"Gateway timeout","errorCode":"50400000"}', hang=1.0)

    monkeypatch.setattr(carrier, "_edit_device", lands_but_the_answer_is_lost)
    push = session_apply(session=session, trigger="test")
    assert push_batch_run(batch_id=RatePlanPushBatch.objects.get(push=push, number=1).pk) == "abort"
    push.refresh_from_db()
    assert not waiting and set(api_changes(server)) == lost
    # Stopped, but not over: the sends that may have landed are read back first.
    assert push.status == "verifying" and "circuit open" in push.error

    if not outage_during_verification:
        carrier.faults.outage = False
    assert verify.push_verify_run(push_id=push.pk) == "done"
    push.refresh_from_db()
    assert push.status == "failed" and "circuit open" in push.error and push.discrepancies == 0
    others = RatePlanChange.objects.filter(push=push).exclude(iccid__in=lost)
    assert all(c.status == "failed" and c.sends == 0 and "Not sent: the push stopped" in c.error for c in others)
    landed = RatePlanChange.objects.filter(push=push, iccid__in=lost)
    devices = dict(Device.objects.filter(iccid__in=lost).values_list("iccid", "rate_plan_code"))
    report = [m for m in mail.outbox if m.subject.startswith("Rate plan update finished")]
    assert len(report) == 1 and "circuit open" in report[0].body
    if outage_during_verification:
        # Still down: the reads fail too, so the outcome stays unknown (failed, not verified) and the report says so.
        assert push.applied == 0 and ": 0 applied" in report[0].subject
        assert all(c.status == "failed" and c.sends == 1 and c.verified is None
                   and "Verification read failed" in c.error for c in landed)
        assert devices == {c.iccid: c.from_plan_code for c in planned[:4]}
        carrier.faults.outage = False
    else:
        assert push.applied == 4 and ": 4 applied" in report[0].subject
        assert all(c.status == "applied" and c.verified and c.sends == 1 and "a send landed" in c.error
                   for c in landed)
        assert devices == {c.iccid: c.to_plan_code for c in planned[:4]}

    # Applying again sends the rest and nothing for the four, and reports no discrepancy.
    monkeypatch.setattr(Conf, "SYNC", True)
    again = session_apply(session=session, trigger="test")
    again.refresh_from_db()
    assert again.status == "succeeded" and again.discrepancies == 0 and again.applied == again.total
    retried = again.changes.filter(iccid__in=lost)
    if outage_during_verification:
        assert again.total == len(planned)
        assert all(c.sends == 0 and "sent by an earlier push" in c.error for c in retried)
    else:
        assert again.total == len(planned) - 4 and not retried.exists()
    assert dict(Device.objects.filter(iccid__in=lost).values_list("iccid", "rate_plan_code")) == {
        c.iccid: c.to_plan_code for c in planned[:4]}
    changed = api_changes(server)
    assert set(changed) == {c.iccid for c in planned} and set(changed.values()) == {1}
    assert sum(puts(server)[iccid] for iccid in lost) == 4


@NO_COMMITS
def test_verification_reports_an_applied_sim_the_carrier_no_longer_shows(simulator, monkeypatch):
    server = simulator(sims=200, seed=30)
    provider = fleet(server, devices=200, seed=30)
    period, now = mid_period(provider)
    changes = moves(provider, 30)
    push = push_create(provider=provider, changes=changes, period=period, now=now)
    batch = RatePlanPushBatch.objects.get(push=push)
    assert push_batch_run(batch_id=batch.pk) == "done"
    push.refresh_from_db()
    assert push.status == "verifying"
    # Someone moves one SIM back on the portal before the read-back.
    reverted = changes[5]
    server.carrier.rate_plan[server.carrier.index[reverted.iccid]] = reverted.from_plan_code

    assert verify.push_verify_run(push_id=push.pk) == "done"
    assert verify.push_verify_run(push_id=push.pk) == "not_ours"  # a duplicate does nothing
    push.refresh_from_db()
    assert push.status == "finished_with_errors" and push.verify_mismatches == 1
    change = RatePlanChange.objects.get(push=push, iccid=reverted.iccid)
    assert change.status == "applied" and change.verified is False and change.verify_reads == 2
    assert change.verified_plan == reverted.from_plan_code
    assert RatePlanChange.objects.filter(push=push, verified=True).count() == 29
    report = mail.outbox[-1]
    assert "does not show the new plan" in report.body and reverted.iccid in report.body


def test_a_sim_pinned_after_its_session_ran_is_not_pushed(simulator, monkeypatch):
    from django_q.conf import Conf

    from devices.models import DevicePin

    server = simulator(sims=200, seed=31)
    provider = fleet(server, devices=200, seed=31)
    monkeypatch.setattr(Conf, "SYNC", True)
    session = completed_session(provider)
    planned = session_changes(session=session)
    assert len(planned) > 5
    pinned = planned[0]
    DevicePin.objects.create(device_id=pinned.device_id, reason="the customer's contract fixes this plan")
    after = session_changes(session=session)
    assert {c.iccid for c in after} == {c.iccid for c in planned} - {pinned.iccid}
    push = session_apply(session=session, trigger="test")
    push.refresh_from_db()
    sent = puts(server)
    assert sent and pinned.iccid not in sent  # the push ran (inline) and left the pinned SIM alone
    assert not RatePlanChange.objects.filter(push=push, iccid=pinned.iccid).exists()
    assert Device.objects.get(pk=pinned.device_id).rate_plan_code == pinned.from_plan_code
