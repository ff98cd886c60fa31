"""Finalize prices what is there now, once, and always with a bound that covers it."""
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from devices.models import Device, DeviceUsage
from optimizer.models import CommGroup, DeviceAssignment
from rateplans.models import CommunicationPlan, RatePlan
from sessions import pipeline, tasks
from sessions.models import OptimizationSession, Stage
from sessions.services import session_start
from tests import factories

pytestmark = pytest.mark.demo(devices=300, seed=12)


def up_to_finalize(provider, **kwargs):
    """Run the stages and every work item; stop before finalize (no commit hooks run under `db`)."""
    session = session_start(provider=provider, sync_devices=False, **kwargs)
    pipeline.stage_start(session.pk)
    pipeline.stage_sync(session.pk)
    pipeline.stage_grouping(session.pk)
    pipeline.stage_queueing(session.pk)
    for item in session.run.queues.all():
        tasks.run_work_item(item.pk)
    session.refresh_from_db()
    assert session.stage == Stage.FINALIZING
    return session


def assert_consistent(session):
    assert session.status == "succeeded", session.error
    assert session.lower_bound is not None and session.lower_bound <= session.optimized_cost
    for group in CommGroup.objects.filter(run=session.run).exclude(optimized_cost=None):
        assert group.lower_bound <= group.optimized_cost, group.name


def test_a_sync_between_the_work_items_and_finalize_is_priced_and_bounded_on_the_new_data(demo):
    session = up_to_finalize(demo.provider)
    period = session.billing_period
    # Meanwhile a sync brings one more SIM and much lower usage for everyone.
    comm = CommunicationPlan.objects.get(provider=demo.provider, name="CP-Fleet-Standard")
    extra = factories.DeviceFactory(provider=demo.provider, iccid="8901269999999999999", communication_plan=comm,
                                    rate_plan=comm.rate_plans.order_by("included_mb").first())
    DeviceUsage.objects.create(device=extra, billing_period=period, projected_mb=Decimal("3"))
    DeviceUsage.objects.filter(billing_period=period).update(projected_mb=Decimal("0.5"))

    pipeline.stage_finalizing(session.pk)
    session.refresh_from_db()
    assert_consistent(session)
    billable = Device.objects.filter(provider=demo.provider, status="ACTIVATED").count()
    assert DeviceAssignment.objects.filter(run=session.run).count() == billable == session.device_count
    assert DeviceAssignment.objects.filter(run=session.run, device=extra).exists()


def test_a_second_finalize_delivery_while_the_first_runs_does_nothing(demo):
    session = up_to_finalize(demo.provider)
    OptimizationSession.objects.filter(pk=session.pk).update(stage_claimed_by="other-worker:1",
                                                             stage_heartbeat_at=timezone.now())
    pipeline.stage_finalizing(session.pk)
    session.refresh_from_db()
    assert session.stage == Stage.FINALIZING and not DeviceAssignment.objects.exists()
    assert not [m for m in mail.outbox if m.subject.startswith("Optimization Results")]


def test_a_one_sim_group_keeps_the_session_bound(demo):
    plan = RatePlan.objects.get(provider=demo.provider, code="M2M-10GB")
    lonely = CommunicationPlan.objects.create(provider=demo.provider, name="CP-One-Device")
    lonely.rate_plans.set([plan, RatePlan.objects.get(provider=demo.provider, code="M2M-5GB-POOL")])
    device = factories.DeviceFactory(provider=demo.provider, iccid="8901268888888888888", communication_plan=lonely,
                                     rate_plan=plan)
    session = up_to_finalize(demo.provider)
    DeviceUsage.objects.create(device=device, billing_period=session.billing_period, projected_mb=Decimal("100"))
    pipeline.stage_finalizing(session.pk)
    session.refresh_from_db()
    assert_consistent(session)
    group = CommGroup.objects.get(run=session.run, communication_plans=lonely)
    assert group.device_count == 1 and group.lower_bound is not None
