"""Pushing recommended rate plans to the carrier simulator over loopback: exactly once, Go/No-Go, discrepancies, API."""
import datetime as dt
import io
import threading
import time
from collections import Counter

import httpx
import pytest
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from carriers.simulator import Faults
from carriers.simulator.carrier import SimResponse
from carriers.simulator.testing import running_simulator
from devices import push as push_services
from devices.demo import demo_seed
from devices.models import Device, RatePlanChange, RatePlanPush, RatePlanPushBatch
from devices.push import PlannedChange, PushAlreadyRunning, push_batch_run, push_create, push_decide
from rateplans.models import RatePlan
from rateplans.services import billing_period_current
from sessions.apply import session_apply, session_changes
from sessions.models import OptimizationSession
from sessions.services import session_start
from tests.factories_results import session_with_results, token_for

pytestmark = pytest.mark.django_db(transaction=True)  # queued tasks run when their transaction commits
# For tests that need no commit (nothing queued has to run): a rolled-back test transaction is much cheaper.
NO_COMMITS = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_push(settings):
    """Test-sized timeouts and waits (the push stores them, so every worker of it uses the same)."""
    settings.PUSH_CALL_TIMEOUT = 0.25
    settings.PUSH_BACKOFF_BASE = 0.002
    settings.PUSH_BACKOFF_CAP = 0.01
    settings.PUSH_RESEND_MARGIN_SECONDS = 0.2
    settings.PUSH_VERIFY_DELAY_SECONDS = 0.05
    settings.PUSH_LEASE_SECONDS = 2
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def inline_tasks(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def simulator():
    """start(sims=, seed=, faults=) -> a simulator on 127.0.0.1; all stopped after the test."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(running_simulator(**kwargs))


def fleet(server, *, devices, seed, **fields):
    """The demo account with the same fleet as the simulator, pointed at it."""
    provider = demo_seed(devices=devices, seed=seed).provider
    values = {"api_base_url": server.url, "rate_limit_per_second": 1000, "max_concurrency": 4, **fields}
    for name, value in values.items():
        setattr(provider, name, value)
    provider.save()
    return provider


def completed_session(provider):
    session = session_start(provider=provider, sync_devices=False)
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status == "succeeded", session.error
    return session


def moves(provider, count):
    """`count` SIMs, each moved to the next plan its communication plan allows."""
    allowed = {c.pk: list(c.rate_plans.order_by("included_mb", "code")) for c in provider.communication_plans.all()}
    changes = []
    for device in Device.objects.filter(provider=provider).order_by("iccid")[:count]:
        plans = allowed[device.communication_plan_id]
        current = next(i for i, p in enumerate(plans) if p.code == device.rate_plan_code)
        target = plans[(current + 1) % len(plans)]
        changes.append(PlannedChange(device_id=device.pk, iccid=device.iccid, from_plan_id=device.rate_plan_id,
                                     from_plan_code=device.rate_plan_code, to_plan_id=target.pk,
                                     to_plan_code=target.code))
    assert len(changes) == count
    return changes


def mid_period(provider):
    period = billing_period_current(provider=provider)
    return period, period.starts_at() + dt.timedelta(days=3)


def api_changes(server) -> Counter:
    """ICCID -> how many times the carrier changed its plan through the API (the simulator's own log)."""
    return Counter(c["iccid"] for c in server.carrier.changes if c["source"] == "api")


def puts(server) -> Counter:
    return Counter(r["path"].rsplit("/", 1)[1] for r in server.carrier.request_log("/rws/api/v1/devices/")
                   if r["method"] == "PUT")


def test_2000_changes_with_10_percent_failures_are_each_applied_exactly_once(inline_tasks, simulator):
    server = simulator(sims=2100, seed=21, faults=Faults(error_rate=0.10, hang_seconds=1))
    provider = fleet(server, devices=2100, seed=21, max_concurrency=8)
    changes = moves(provider, 2000)
    period, now = mid_period(provider)

    push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=now)
    push.refresh_from_db()

    assert push.decision == "go" and push.status == "succeeded", (push.status, push.error)
    assert push.applied == 2000 and push.failed == push.rejected == push.discrepancies == 0
    assert RatePlanPushBatch.objects.filter(push=push).count() == 8
    assert not RatePlanChange.objects.filter(push=push).exclude(status="applied", verified=True).exists()
    # The carrier's own change log: every SIM changed once, to its planned plan, none missed, none twice.
    changed = api_changes(server)
    assert set(changed) == {c.iccid for c in changes} and set(changed.values()) == {1}
    planned = {c.iccid: c.to_plan_code for c in changes}
    assert all(c["to"] == planned[c["iccid"]] for c in server.carrier.changes)
    # Failures really happened and were retried: a tenth of the calls failed, some PUTs were sent again.
    log = server.carrier.request_log()
    failed_calls = sum(1 for r in log if r["status"] >= 500 or r["status"] == 429 or r["fault"])
    assert failed_calls > 0.07 * len(log), (failed_calls, len(log))
    sends = Counter(RatePlanChange.objects.filter(push=push).values_list("sends", flat=True))
    assert sends[1] < 2000 and sum(n * k for n, k in sends.items()) == sum(puts(server).values())
    # The device table follows the carrier.
    by_device = dict(Device.objects.filter(pk__in=[c.device_id for c in changes]).values_list("pk", "rate_plan_code"))
    assert by_device == {c.device_id: c.to_plan_code for c in changes}
    assert push.measured_rate and push.measured_rate > 60
    report = [m for m in mail.outbox if m.subject.startswith("Rate plan update finished")]
    assert [m.subject for m in report] == ["Rate plan update finished for Acme Jasper (simulated): 2000 applied, 0 need attention"]


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

    real_send, calls, numbers, late_puts = push_services._send_plan, [], {}, []

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
    monkeypatch.setattr(push_services, "_send_plan", crashing_send)
    with pytest.raises(Killed):
        push_batch_run(batch_id=first.pk)
    monkeypatch.setattr(push_services, "_send_plan", real_send)
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
    report = push_services.pushes_resume(now=later, enqueue=lambda func, *args: queued.append((func, args)))
    assert report["requeued_batches"] == 1 and queued == [(push_services.BATCH_TASK, (first.pk,))]
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


@NO_COMMITS
def test_no_go_when_the_period_ends_too_soon_is_recorded_and_emailed_and_sends_nothing(simulator):
    server = simulator(sims=300, seed=23)
    provider = fleet(server, devices=300, seed=23)
    period = billing_period_current(provider=provider)
    changes = moves(provider, 100)
    # 100 changes at 60 SIMs/min need 1.7 min; with 11 min left, 9.3 would remain: fewer than 10.
    now = period.ends_at() - dt.timedelta(minutes=11)

    push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=now)

    assert push.status == "no_go" and push.decision == "no_go"
    assert abs(push.minutes_needed - 100 / 60) < 1e-9 and abs(push.minutes_left - 11) < 1e-6
    assert "No-Go" in push.decision_reason and "nothing was changed" in push.decision_reason
    assert not RatePlanChange.objects.filter(push=push).exists()
    assert not server.carrier.request_log()
    [email] = mail.outbox
    assert email.subject == push_services.NO_GO_SUBJECT
    assert push.decision_reason in email.body and email.to == ["fleet-ops@acme.example"]
    # No-Go holds no lock: a push with time to spare can start at once.
    assert push_create(provider=provider, changes=changes, period=period, now=now - dt.timedelta(minutes=2)).decision == "go"


@NO_COMMITS
@pytest.mark.parametrize(("changes", "minutes_left", "go"), [
    (100, 11.66, False),  # 1.67 needed, 9.99 would remain: not "at least 10", by a hair
    (100, 11.70, True),
    (1000, 14.0, False),  # needed is min(1000, 250) / 60 = 4.17
    (1000, 14.2, True),
    (0, 10.0, True),
    (10, -5.0, False),  # the period is over
])
def test_go_needs_ten_minutes_to_spare_after_one_batch_at_the_rate(provider_a, changes, minutes_left, go):
    period = billing_period_current(provider=provider_a)
    now = period.ends_at() - dt.timedelta(minutes=minutes_left)
    decision = push_decide(provider=provider_a, period=period, changes=changes, batch_size=250, now=now)
    assert decision.go is go, decision.reason
    assert decision.rate_per_minute == 60 and "default" in decision.rate_source


def test_the_best_measured_rate_of_an_earlier_push_plans_the_next(inline_tasks, simulator):
    server = simulator(sims=200, seed=24)
    provider = fleet(server, devices=200, seed=24)
    period, now = mid_period(provider)
    first = push_create(provider=provider, changes=moves(provider, 80), period=period, now=now)
    first.refresh_from_db()
    assert first.status == "succeeded" and first.measured_rate > 60

    rate, source = push_services.push_rate_best(provider=provider)
    assert rate == first.measured_rate and f"push #{first.pk}" in source
    decision = push_decide(provider=provider, period=period, changes=500, batch_size=250, now=now)
    assert decision.minutes_needed == pytest.approx(250 / first.measured_rate)
    # A lower limit since then caps it: 1 call/s is 30 SIMs/min, at a read and a PUT per SIM.
    provider.rate_limit_per_second = 1
    provider.save()
    rate, source = push_services.push_rate_best(provider=provider)
    assert rate == 30 and "capped" in source


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

    push = session_apply(session=session, trigger="test")
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

    server.carrier.faults.outage = False
    again = push_create(provider=provider, changes=moves(provider, 60)[40:], period=period, now=now)
    again.refresh_from_db()
    assert again.status == "succeeded" and again.applied == 20
    assert set(api_changes(server).values()) == {1} and len(api_changes(server)) == 60


@pytest.mark.parametrize("integration", ["Jasper", "POD19", "TMobileJasper", "Rogers"])
def test_auto_apply_pushes_after_finalize_for_every_jasper_family_account(inline_tasks, simulator, integration):
    server = simulator(sims=250, seed=27)
    provider = fleet(server, devices=250, seed=27, integration=integration, auto_apply=True)
    session = completed_session(provider)
    push = RatePlanPush.objects.get(session=session)
    assert push.trigger == "auto" and push.status == "succeeded", push.error
    assert push.applied == push.total == session.run.assignments.filter(changed=True).count() > 0
    assert len(api_changes(server)) == push.total


def test_a_redelivered_automatic_apply_task_pushes_nothing_again(inline_tasks, simulator):
    from sessions import tasks

    server = simulator(sims=200, seed=29)
    provider = fleet(server, devices=200, seed=29, auto_apply=True)
    session = completed_session(provider)
    sent = len(server.carrier.request_log())
    tasks.apply_session(session.pk, "auto")  # the broker delivers the same task again
    assert RatePlanPush.objects.filter(session=session).count() == 1
    assert len(server.carrier.request_log()) == sent


@pytest.mark.parametrize(("integration", "auto_apply"), [("Jasper", False), ("Telegence", True)])
def test_no_automatic_push_without_auto_apply_or_outside_the_jasper_family(inline_tasks, simulator, integration,
                                                                            auto_apply):
    server = simulator(sims=150, seed=28)
    provider = fleet(server, devices=150, seed=28, integration=integration, auto_apply=auto_apply)
    session = completed_session(provider)
    assert not RatePlanPush.objects.filter(session=session).exists()
    assert not server.carrier.request_log()


@NO_COMMITS
def test_one_running_push_per_account_is_enforced_by_the_database(provider_a):
    period = billing_period_current(provider=provider_a)
    values = {"provider": provider_a, "decision": "go", "period_ends_at": period.ends_at(), "minutes_left": 100,
              "minutes_needed": 1, "rate_per_minute": 60}
    RatePlanPush.objects.create(status="running", **values)
    RatePlanPush.objects.create(status="no_go", **{**values, "decision": "no_go"})
    with pytest.raises(IntegrityError), transaction.atomic():
        RatePlanPush.objects.create(status="verifying", **values)


# -- the API, the admin and the command ----------------------------------------------------------------

@pytest.fixture
def api(client, alice, tenant_a):
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token_for(alice)}"
    return client


def apply_url(session):
    return reverse("api:session-apply", kwargs={"guid": session.guid})


@NO_COMMITS
def test_api_apply_answers_202_with_the_push_then_409_while_it_runs(api, provider_a):
    # Tasks are not run here (no worker): the push stays running, as it would while a worker sends it.
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a),
                                   groups=2, sims_per_group=6)
    response = api.post(apply_url(session))
    assert response.status_code == 202, response.content
    body = response.json()
    push = RatePlanPush.objects.get(pk=body["id"])
    assert body["status"] == "running" and body["decision"] == "go" and body["session"] == str(session.guid)
    assert body["total"] == body["remaining"] == session.run.assignments.filter(changed=True).count() > 0
    assert body["applied"] == body["failed"] == 0 and body["trigger"] == "api"

    again = api.post(apply_url(session))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "push_running" and again.json()["error"]["active_push"] == push.pk

    listed = api.get(reverse("api:session-pushes", kwargs={"guid": session.guid}))
    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert row["id"] == push.pk and row["remaining"] == push.total and row["rate_per_minute_measured"] is None


@NO_COMMITS
def test_api_apply_refuses_a_session_that_has_not_completed(api, provider_a):
    session = session_with_results(provider=provider_a, status="running", stage="optimizing", progress=50)
    response = api.post(apply_url(session))
    assert response.status_code == 409 and response.json()["error"]["code"] == "session_not_complete"
    assert not RatePlanPush.objects.exists()


@NO_COMMITS
def test_api_apply_and_pushes_are_tenant_scoped(api, provider_b):
    theirs = session_with_results(provider=provider_b, period=billing_period_current(provider=provider_b))
    assert api.post(apply_url(theirs)).status_code == 404
    assert not RatePlanPush.objects.exists()
    session_apply(session=theirs, trigger="test")
    assert api.get(reverse("api:session-pushes", kwargs={"guid": theirs.guid})).status_code == 404


@NO_COMMITS
def test_api_apply_needs_credentials(client, provider_a):
    session = session_with_results(provider=provider_a)
    assert client.post(apply_url(session)).status_code == 401


@NO_COMMITS
def test_admin_action_applies_the_selected_session(client, provider_a):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a))
    response = client.post(reverse("admin:optsessions_optimizationsession_changelist"),
                           {"action": "apply_recommendations", "_selected_action": [session.pk]}, follow=True)
    assert response.status_code == 200
    push = RatePlanPush.objects.get(session=session)
    assert push.trigger == "admin" and push.decision == "go"
    assert f"rate plan update #{push.pk}" in response.content.decode()
    page = client.get(reverse("admin:devices_rateplanpush_change", args=[push.pk]))
    assert page.status_code == 200 and b"remaining" in page.content


def test_command_sends_the_push_itself_and_prints_progress_and_summary(simulator, monkeypatch):
    from django_q.conf import Conf

    server = simulator(sims=300, seed=29)
    provider = fleet(server, devices=300, seed=29)
    monkeypatch.setattr(Conf, "SYNC", True)
    session = completed_session(provider)
    monkeypatch.setattr(Conf, "SYNC", False)
    out = io.StringIO()
    # No worker runs: the command claims the batches and the verification itself.
    call_command("apply_recommendations", "--session", str(session.pk), stdout=out)
    push = RatePlanPush.objects.get(session=session)
    text = out.getvalue()
    assert push.status == "succeeded" and push.trigger == "command"
    assert f"Rate plan update #{push.pk} succeeded: {push.applied:,} applied" in text
    assert "settled" in text  # counted lines when not on a terminal
    assert len(api_changes(server)) == push.total

    with pytest.raises(Exception, match="no optimization session"):
        call_command("apply_recommendations", "--session", "999999", stdout=io.StringIO())


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
    assert push_services.push_verify_run(push_id=push.pk) == "done"
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

    assert push_services.push_verify_run(push_id=push.pk) == "done"
    assert push_services.push_verify_run(push_id=push.pk) == "not_ours"  # a duplicate does nothing
    push.refresh_from_db()
    assert push.status == "finished_with_errors" and push.verify_mismatches == 1
    change = RatePlanChange.objects.get(push=push, iccid=reverted.iccid)
    assert change.status == "applied" and change.verified is False and change.verify_reads == 2
    assert change.verified_plan == reverted.from_plan_code
    assert RatePlanChange.objects.filter(push=push, verified=True).count() == 29
    report = mail.outbox[-1]
    assert "does not show the new plan" in report.body and reverted.iccid in report.body


@NO_COMMITS
def test_a_second_push_while_one_runs_is_refused(provider_a):
    session = session_with_results(provider=provider_a, period=billing_period_current(provider=provider_a))
    first = session_apply(session=session, trigger="test")
    with pytest.raises(PushAlreadyRunning) as refused:
        session_apply(session=session, trigger="test")
    assert refused.value.extra == {"active_push": first.pk}
