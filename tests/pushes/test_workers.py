"""A rate-plan push on real qcluster workers: one is SIGKILLed mid-batch; the push resumes, nothing sent twice or missed."""
import os
import signal

import pytest

from carriers.simulator import Faults
from carriers.simulator.testing import running_simulator
from pushes.create import push_create
from pushes.models import RatePlanChange, RatePlanPush, RatePlanPushBatch
from pushes.resume import pushes_resume
from tests.pushes.helpers import api_changes, fleet, mid_period, moves, puts
from tests.qcluster import qcluster, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_worker_killed_mid_push_then_resumed_sends_no_change_twice_and_misses_none(tmp_path, settings):
    # Stored on the push, so the cluster's workers use these too.
    settings.PUSH_CALL_TIMEOUT = 0.5
    settings.PUSH_RESEND_MARGIN_SECONDS = 0.5
    settings.PUSH_LEASE_SECONDS = 2
    settings.PUSH_VERIFY_DELAY_SECONDS = 0.1
    # A few milliseconds per call keeps a batch on the wire long enough to be interrupted.
    with running_simulator(sims=700, seed=31, faults=Faults(latency_ms=8)) as server:
        provider = fleet(server, devices=700, seed=31)
        changes = moves(provider, 600)
        period, now = mid_period(provider)
        with qcluster(workers=1, log_path=tmp_path / "cluster.log") as cluster:
            push = push_create(provider=provider, changes=changes, period=period, trigger="test", now=now)
            applied = RatePlanChange.objects.filter(push=push, status="applied")

            def busy_batch():
                batch = RatePlanPushBatch.objects.filter(push=push, status="running").exclude(claimed_by="").first()
                return batch if batch is not None and applied.count() >= 100 else None

            sending = RatePlanChange.objects.filter(push=push, status="sending")
            stuck = set()
            # Freeze the worker, look at what it has in flight, and kill it only with changes on the wire;
            # between two calls nothing is in flight, so thaw it and look again.
            for _ in range(50):
                victim = wait_for(busy_batch, timeout=60, interval=0.01, what="a batch half sent", clusters=[cluster])
                pid = int(victim.claimed_by.split("/")[0].rsplit(":", 1)[1])
                os.kill(pid, signal.SIGSTOP)
                stuck = set(sending.values_list("iccid", flat=True))
                if stuck:
                    os.kill(pid, signal.SIGKILL)
                    break
                os.kill(pid, signal.SIGCONT)

            def finished():
                pushes_resume()  # the resume schedule would do this every minute
                done = RatePlanPush.objects.get(pk=push.pk)
                return done if not done.is_active else None

            push = wait_for(finished, timeout=90, interval=0.5, what="the push to end", clusters=[cluster])

    assert push.status == "succeeded", (push.status, push.error)
    assert push.applied == 600 and RatePlanChange.objects.filter(push=push, verified=True).count() == 600
    # The carrier's own log: every SIM changed exactly once, and every planned SIM was changed.
    changed = api_changes(server)
    assert set(changed) == {c.iccid for c in changes} and set(changed.values()) == {1}
    assert set(puts(server).values()) == {1}
    killed = RatePlanPushBatch.objects.get(pk=victim.pk)
    assert killed.attempts == 2 and killed.status == "done"
    assert stuck, "the worker died with changes in flight"
    # Each stuck change was re-read first: confirmed if its PUT had landed (1 claim), else sent by the resumed worker.
    resumed = {(c.status, c.sends, c.attempts) for c in RatePlanChange.objects.filter(push=push, iccid__in=stuck)}
    assert resumed <= {("applied", 1, 1), ("applied", 2, 2)}, resumed
