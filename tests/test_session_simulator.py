"""A whole session against the carrier simulator over loopback, with AMOP receiving every event."""
import json
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import override_settings

from carriers.simulator.testing import running_simulator
from devices.models import Device
from devices.testing import simulated_provider
from optimizer.models import DeviceAssignment
from sessions.models import OptimizationSession, ProgressEvent
from sessions.services import session_start
from sessions.webhooks import SIGNATURE_HEADER, signature_valid
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "amop-test-secret"


@pytest.fixture
def inline_tasks(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


def test_session_syncs_from_the_carrier_optimizes_and_reports_to_amop(inline_tasks, tenant_a):
    with running_simulator(sims=800, seed=21) as server, Receiver() as amop:
        provider = simulated_provider(server=server, tenant=tenant_a)
        with override_settings(AMOP_WEBHOOK_URL=amop.url, AMOP_WEBHOOK_SECRET=SECRET):
            session = session_start(provider=provider)
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status == "succeeded", session.error
    assert Device.objects.filter(provider=provider).count() == 800

    bodies = [json.loads(r["body"])["data"] for r in amop.requests]
    assert all(signature_valid(r["body"], r["headers"][SIGNATURE_HEADER], SECRET) for r in amop.requests)
    progress = [b["Progress"] for b in bodies if b.get("job_name") == "Progress"]
    assert progress[:5] == [0, 20, 30, 40, 50] and progress[-2:] == [90, 100] and progress == sorted(progress)
    sync_notices = [b for b in bodies if b.get("path") == "/lambda_sync_jobs_"]
    assert [n["key_name"] for n in sync_notices] == ["jasper_devices"]
    assert ProgressEvent.objects.filter(delivered_at__isnull=True).count() == 0

    rows = DeviceAssignment.objects.filter(run=session.run)
    assert rows.count() == session.device_count > 0
    assert abs(rows.aggregate(s=Sum("recommended_cost"))["s"] - session.optimized_cost) < Decimal("0.01")
    assert session.report_path.endswith(".xlsx")
