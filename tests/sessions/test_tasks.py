"""Sessions on real qcluster processes: workers killed mid-task, two clusters sharing one session."""
import os
import signal

import pytest
from django.db import connection
from django.test import override_settings

from devices.demo import demo_seed
from optimizer.models import DeviceAssignment, OptimizationQueue, OptimizationResult
from sessions.models import OptimizationSession
from sessions.services import session_start
from sessions.watchdog import watchdog_run
from tests.qcluster import qcluster, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def finished(session_id):
    session = OptimizationSession.objects.get(pk=session_id)
    connection.close()  # see other processes' commits on the next query
    return session if not session.is_active else None


def assignment_of(session):
    return dict(DeviceAssignment.objects.filter(run=session.run).values_list("device_id", "recommended_plan_id"))


@override_settings(LEGACY_SEQUENCES_PER_ITEM=1000, WORK_LEASE_SECONDS=3)
def test_worker_killed_during_optimization_still_completes_with_the_same_answer(tmp_path):
    demo = demo_seed(devices=60_000, seed=5)
    env = {"WORK_LEASE_SECONDS": "3", "LEGACY_SEQUENCES_PER_ITEM": "1000"}
    with qcluster(workers=1, env=env, log_path=tmp_path / "cluster.log") as cluster:
        disturbed = session_start(provider=demo.provider, method="legacy", sync_devices=False)
        running = wait_for(lambda: OptimizationQueue.objects.filter(status="RunningPermutations").exclude(claimed_by="").first(),
                           timeout=60, interval=0.01, what="a running work item", clusters=[cluster])
        pid = int(running.claimed_by.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)

        def done_with_watchdog():
            watchdog_run()  # the schedule would do this every minute; here, as often as we poll
            return finished(disturbed.pk)

        disturbed = wait_for(done_with_watchdog, timeout=120, interval=0.5, what="the disturbed session to end",
                              clusters=[cluster])
        assert disturbed.status == "succeeded", disturbed.error
        assert OptimizationQueue.objects.get(pk=running.pk).attempts == 2

        undisturbed = session_start(provider=demo.provider, method="legacy", sync_devices=False)
        undisturbed = wait_for(lambda: finished(undisturbed.pk), timeout=120, interval=0.5, what="the second session")
    assert undisturbed.status == "succeeded"
    assert assignment_of(disturbed) == assignment_of(undisturbed)
    assert DeviceAssignment.objects.filter(run=disturbed.run).count() == disturbed.device_count
    groups = disturbed.run.comm_groups.count()
    assert OptimizationResult.objects.filter(comm_group__run=disturbed.run).count() <= groups


@override_settings(LEGACY_SEQUENCES_PER_ITEM=25)
def test_two_clusters_share_the_work_of_one_session(tmp_path):
    demo = demo_seed(devices=20_000, seed=6)
    env = {"LEGACY_SEQUENCES_PER_ITEM": "25"}
    with qcluster(workers=1, env=env, log_path=tmp_path / "a.log") as a, qcluster(workers=1, env=env, log_path=tmp_path / "b.log") as b:
        session = session_start(provider=demo.provider, method="legacy", sync_devices=False)
        session = wait_for(lambda: finished(session.pk), timeout=180, interval=0.5, what="the session to end", clusters=[a, b])
    assert session.status == "succeeded", session.error
    items = OptimizationQueue.objects.filter(run=session.run)
    workers = set(items.values_list("claimed_by", flat=True))
    assert items.count() > 20 and len(workers) == 2, workers
    assert not items.exclude(status="CompleteWithSuccess").exists()
