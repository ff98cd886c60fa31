"""The watchdog: no session stays running forever, no lost work item stays lost, a slow stage that beats is left alone."""
import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from optimizer.models import OptimizationQueue
from sessions import pipeline
from sessions.models import OptimizationSession, Stage
from sessions.services import session_start
from sessions.watchdog import watchdog_run
from tests.sessions.test_pipeline import at_sync


def advance_to_optimizing(session):
    """Run the stages up to the work items, the way the workers would, without running the items."""
    pipeline.stage_start(session.pk)
    pipeline.stage_sync(session.pk)
    pipeline.stage_grouping(session.pk)
    pipeline.stage_queueing(session.pk)
    session.refresh_from_db()
    assert session.stage == Stage.OPTIMIZING
    return session


def test_session_past_its_deadline_is_failed_with_an_error_event(demo):
    session = session_start(provider=demo.provider, sync_devices=False)
    OptimizationSession.objects.filter(pk=session.pk).update(deadline=timezone.now() - dt.timedelta(seconds=1))
    report = watchdog_run()
    session.refresh_from_db()
    assert report["failed_sessions"] == 1 and session.status == "failed"
    assert "deadline" in session.events.get(kind="ErrorMessage").error_message
    # and the account is free again
    session_start(provider=demo.provider, sync_devices=False)


def test_expired_lease_is_requeued_then_failed_after_max_attempts(demo, settings):
    session = advance_to_optimizing(session_start(provider=demo.provider, sync_devices=False))
    item = OptimizationQueue.objects.filter(run=session.run).first()
    past = timezone.now() - dt.timedelta(seconds=1)
    OptimizationQueue.objects.filter(pk=item.pk).update(status="RunningPermutations", claimed_by="dead:1",
                                                         lease_expires_at=past, attempts=1)
    queued_before = OrmQ.objects.count()
    assert watchdog_run()["requeued"] == 1
    item.refresh_from_db()
    assert item.status == "NotStarted" and OrmQ.objects.count() == queued_before + 1

    OptimizationQueue.objects.filter(pk=item.pk).update(status="RunningPermutations", claimed_by="dead:2",
                                                         lease_expires_at=past,
                                                         attempts=settings.Q_CLUSTER["max_attempts"])
    assert watchdog_run()["failed_items"] == 1
    item.refresh_from_db()
    assert item.status == "CompleteWithErrors" and "Lease expired" in item.error


def test_a_lost_stage_task_is_started_again(demo, settings):
    session = session_start(provider=demo.provider, sync_devices=False)
    settings.STAGE_STALL_SECONDS = 10
    queued_before = OrmQ.objects.count()
    assert watchdog_run(now=timezone.now() + dt.timedelta(seconds=30))["nudged"] == 1
    assert OrmQ.objects.count() == queued_before + 1
    assert session.stage == Stage.START


def test_setup_schedules_is_idempotent(db):
    out = io.StringIO()
    call_command("setup_schedules", stdout=out)
    call_command("setup_schedules", stdout=out)
    funcs = sorted(Schedule.objects.values_list("func", flat=True))
    assert funcs == ["devices.tasks.background_syncs", "pushes.tasks.resume_pushes", "sessions.tasks.deliver_events",
                     "sessions.tasks.final_usage_check",
                     "sessions.tasks.watchdog_run", "sessions.tasks.window_check"]


@pytest.mark.demo(devices=50, seed=3)
def test_watchdog_does_not_restart_a_slow_stage_that_beats(demo, settings, monkeypatch):
    settings.STAGE_STALL_SECONDS = 60
    queued = []
    monkeypatch.setattr("sessions.watchdog.async_task", lambda *a, **k: queued.append((a, k)))
    long_ago = timezone.now() - dt.timedelta(hours=3)
    at_sync(demo.provider, claimed_by="worker-a:1", heartbeat=timezone.now(), started=long_ago)
    watchdog_run()
    assert queued == []
    OptimizationSession.objects.update(stage_heartbeat_at=timezone.now() - dt.timedelta(seconds=120))
    watchdog_run()
    [(args, options)] = queued
    assert args[1:] == (OptimizationSession.objects.get().pk, Stage.SYNC)
    assert options == {"timeout": settings.SYNC_STAGE_TIMEOUT}
