"""A carrier sync can run for hours: duplicates of its task and the watchdog must leave a live one alone."""
import datetime as dt

import pytest
from django.utils import timezone

from devices.demo import demo_seed
from devices.models import SyncRun
from sessions import pipeline, tasks
from sessions.models import OptimizationSession, Stage
from sessions.services import session_start
from sessions.watchdog import watchdog_run


@pytest.fixture
def demo(db):
    return demo_seed(devices=50, seed=3)


def at_sync(provider, *, claimed_by="", heartbeat=None, started=None):
    session = session_start(provider=provider, sync_devices=True)
    pipeline.stage_start(session.pk)
    started = started or timezone.now()
    OptimizationSession.objects.filter(pk=session.pk).update(
        stage_claimed_by=claimed_by, stage_heartbeat_at=heartbeat,
        stage_timings={"sync": {"started": started.isoformat()}})
    return session


def test_a_duplicate_sync_task_leaves_a_live_sync_alone(demo):
    session = at_sync(demo.provider, claimed_by="worker-a:1", heartbeat=timezone.now())
    tasks.run_stage(session.pk, Stage.SYNC)
    session.refresh_from_db()
    assert (session.status, session.stage, session.stage_claimed_by) == ("running", Stage.SYNC, "worker-a:1")
    assert not SyncRun.objects.exists()  # no second sync was started against the carrier


def test_a_sync_whose_worker_stopped_beating_is_taken_over(demo, settings):
    settings.STAGE_STALL_SECONDS = 60
    session = at_sync(demo.provider, claimed_by="dead:1", heartbeat=timezone.now() - dt.timedelta(seconds=61))
    assert pipeline.stage_claim(session.pk, Stage.SYNC, worker="worker-b:2")
    assert OptimizationSession.objects.get(pk=session.pk).stage_claimed_by == "worker-b:2"
    assert not pipeline.stage_claim(session.pk, Stage.SYNC, worker="worker-c:3")  # b is alive now


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


def test_heartbeat_keeps_the_deadline_ahead_of_a_moving_sync(demo, settings):
    settings.STAGE_HEARTBEAT_SECONDS = 0
    session = at_sync(demo.provider, claimed_by="worker-a:1", heartbeat=timezone.now() - dt.timedelta(minutes=5))
    OptimizationSession.objects.filter(pk=session.pk).update(deadline=timezone.now() + dt.timedelta(minutes=1))
    pipeline.Heartbeat(session.pk, "worker-a:1")()
    session.refresh_from_db()
    assert timezone.now() - session.stage_heartbeat_at < dt.timedelta(seconds=5)
    assert session.deadline > timezone.now() + dt.timedelta(minutes=settings.SESSION_DEADLINE_MINUTES - 1)
    pipeline.Heartbeat(session.pk, "someone-else:9")()  # a worker that lost the claim changes nothing
    assert OptimizationSession.objects.get(pk=session.pk).stage_heartbeat_at == session.stage_heartbeat_at


def test_the_sync_stage_task_is_enqueued_with_its_own_long_timeout(demo, settings, monkeypatch, django_capture_on_commit_callbacks):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: calls.append((a, k)))
    session = session_start(provider=demo.provider)
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.stage_start(session.pk)
    assert calls == [(("sessions.tasks.run_stage", session.pk, Stage.SYNC), {"timeout": settings.SYNC_STAGE_TIMEOUT})]
