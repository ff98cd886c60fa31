"""Say it at once: a start with no django-q2 cluster alive says so immediately (optimize, optimize --wait, the
dashboard) instead of waiting an hour; with a cluster up it does not. The clusters' status is read from the
database (carrieropt.broker.OrmBroker), so any process on any machine sees it."""
import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from carrieropt.models import ClusterStatus
from carrieropt.workers import clusters_alive
from sessions.models import OptimizationSession
from tests.qcluster import qcluster, wait_for


def test_optimize_wait_fails_at_once_without_a_cluster(provider_a):
    started = time.monotonic()
    with pytest.raises(CommandError, match="no worker cluster is running: start `make worker`"):
        call_command("optimize", "--provider", str(provider_a.pk), "--no-sync", "--wait", "--timeout", "3600",
                     stdout=io.StringIO())
    assert time.monotonic() - started < 5, "not after the timeout"
    session = OptimizationSession.objects.get(provider=provider_a)
    assert session.status == "pending", "the session is started and stays queued for a worker"


def test_optimize_without_wait_warns_and_returns(provider_a):
    out, err = io.StringIO(), io.StringIO()
    call_command("optimize", "--provider", str(provider_a.pk), "--no-sync", stdout=out, stderr=err)
    assert "started" in out.getvalue()
    assert "no worker cluster is running" in err.getvalue()


def test_dashboard_start_says_no_cluster_is_running(alice_client, provider_a):
    page = alice_client.post(reverse("dashboard:session-start", args=[provider_a.pk]), follow=True).content.decode()
    assert "Started optimization session" in page
    assert "no worker cluster is running: start `make worker`" in page


def test_with_tasks_inline_there_is_no_warning(alice_client, provider_a, inline_tasks):
    assert clusters_alive() == 1


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_is_seen_while_it_runs_and_not_after(tmp_path, provider_a, alice_client):
    assert clusters_alive() == 0
    with qcluster(workers=1, log_path=tmp_path / "cluster.log") as cluster:
        wait_for(clusters_alive, timeout=60, what="the cluster's status in the database", clusters=[cluster])
        page = alice_client.post(reverse("dashboard:session-start", args=[provider_a.pk]), follow=True).content.decode()
        assert "Started optimization session" in page and "no worker cluster" not in page
        seen = set()
        for _ in range(30):  # 6 s, in which the cluster reports its status 12 times
            seen.add(ClusterStatus.objects.get().expires_at)
            time.sleep(0.2)
        assert len(seen) <= 3, f"written every few seconds, not twice a second: {len(seen)} writes"
    assert clusters_alive() == 0, "a stopped cluster writes that it stopped"
