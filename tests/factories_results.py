"""factory-boy factories for sessions and their events, and a finished session whose every figure comes from the
real pipeline run on a small seeded fleet."""
from decimal import Decimal

import factory
import numpy as np
from django.core import mail
from django.db.models import Max
from django.utils import timezone
from rest_framework.authtoken.models import Token

from carriers import BYTES_PER_MB
from carriers.simulator import fleet as fleet_spec
from devices.demo import demo_catalogue_upsert
from devices.models import Device, DeviceUsage
from optimizer.models import OptimizationRun
from rateplans.models import CommunicationPlan, RatePlan
from rateplans.services import billing_period_current
from sessions import tasks
from sessions.models import OptimizationSession, ProgressEvent, SessionStatus, Stage
from sessions.services import session_start
from tests.factories import BillingPeriodFactory, ServiceProviderFactory


class OptimizationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OptimizationRun

    provider = factory.SubFactory(ServiceProviderFactory)
    billing_period = factory.SubFactory(BillingPeriodFactory, provider=factory.SelfAttribute("..provider"))
    method = "certified"
    status = "CompleteWithSuccess"


class OptimizationSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OptimizationSession

    provider = factory.SubFactory(ServiceProviderFactory)
    tenant = factory.LazyAttribute(lambda o: o.provider.tenant)
    billing_period = factory.SubFactory(BillingPeriodFactory, provider=factory.SelfAttribute("..provider"))
    status = "succeeded"
    stage = "complete"
    progress = 100
    trigger = "api"
    method = "certified"
    run = factory.SubFactory(OptimizationRunFactory, provider=factory.SelfAttribute("..provider"),
                             billing_period=factory.SelfAttribute("..billing_period"), method=factory.SelfAttribute("..method"))


class ProgressEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProgressEvent

    session = factory.SubFactory(OptimizationSessionFactory)
    provider = factory.LazyAttribute(lambda o: o.session.provider)
    sequence = factory.LazyAttribute(lambda o: (o.session.events.aggregate(last=Max("sequence"))["last"] or 0) + 1)
    kind = "Progress"
    progress = 0
    payload = factory.LazyAttribute(lambda o: {"data": {"Progress": o.progress}})


def token_for(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


FLEET_POOL = 2000  # demo SIMs drawn from: ~250 activated ones on the rarest communication plan


def fleet_seed(*, provider, groups: int = 2, sims_per_group: int = 3, seed: int | None = None,
               notes: dict[int, str] | None = None) -> list[Device]:
    """`sims_per_group` activated SIMs on each of the first `groups` communication plans of the demo catalogue
    (`devices.demo.demo_catalogue_upsert`), their plans and cycle usage drawn as the demo fleet draws them.

    The account keeps only those communication plans, at least one: `groups=0` is an account with a
    communication plan and no SIM. `notes` puts a device note on the SIM with that running index
    (0-based, by group then ICCID). Usage is the whole cycle's, in the current billing period. The seed
    defaults to the account's id, so two accounts never share an ICCID.
    """
    seed = provider.pk if seed is None else seed
    assert 0 <= groups <= len(fleet_spec.COMMUNICATION_PLANS)
    demo_catalogue_upsert(provider=provider)
    specs = fleet_spec.COMMUNICATION_PLANS[:max(groups, 1)]
    CommunicationPlan.objects.filter(provider=provider).exclude(name__in=[c.name for c in specs]).delete()
    plans = {p.code: p for p in RatePlan.objects.filter(provider=provider)}
    comms = {c.name: c for c in CommunicationPlan.objects.filter(provider=provider)}
    period = billing_period_current(provider=provider)
    # One pool size whatever the request, so a larger fleet of the same seed holds the smaller one.
    pool = fleet_spec.generate_fleet(FLEET_POOL, seed)
    now = timezone.now()
    rows, usage = [], {}
    for index, spec in enumerate(specs[:groups]):
        picks = np.flatnonzero((pool.comm_plan == index) & (pool.status == 0))[:sims_per_group]
        assert len(picks) == sims_per_group, "the pool holds enough SIMs of every communication plan"
        for i in picks.tolist():
            plan = plans[fleet_spec.PLAN_CODES[pool.rate_plan[i]]]
            rows.append(Device(
                provider=provider, iccid=str(pool.iccid[i]), status="ACTIVATED", rate_plan=plan, rate_plan_code=plan.code,
                communication_plan=comms[spec.name], communication_plan_name=spec.name, synced_at=now,
                sim_notes=(notes or {}).get(len(rows), "")))
            usage[rows[-1].iccid] = Decimal(f"{pool.cycle_usage_mb[i]:.3f}")
    Device.objects.bulk_create(rows, update_conflicts=True, unique_fields=["provider", "iccid"], update_fields=[
        "status", "rate_plan", "rate_plan_code", "communication_plan", "communication_plan_name", "synced_at",
        "sim_notes", "missing_since"])
    devices = {d.iccid: d for d in Device.objects.filter(provider=provider, iccid__in=usage)}
    DeviceUsage.objects.bulk_create(
        [DeviceUsage(device=devices[iccid], billing_period=period, ctd_bytes=int(mb * BYTES_PER_MB), usage_mb=mb,
                     projected_mb=mb, usage_date=now) for iccid, mb in usage.items()],
        update_conflicts=True, unique_fields=["device", "billing_period"],
        update_fields=["ctd_bytes", "usage_mb", "projected_mb", "usage_date"])
    return [devices[d.iccid] for d in rows]


def session_run(*, provider, method: str = "certified", charge_type: str | None = None,
                must_beat_current: bool | None = None, **session_fields) -> OptimizationSession:
    """A session through `session_start` and every stage, each task run inline here as a worker would run it
    (so it works with or without commits), on the account's stored SIMs. The session's own e-mails are
    taken back out of the outbox. `session_fields` are written onto the completed session afterwards
    (to show it, say, as running)."""
    sent = len(getattr(mail, "outbox", []))
    session = session_start(provider=provider, sync_devices=False, method=method, charge_type=charge_type,
                            must_beat_current=must_beat_current)
    for stage in (Stage.START, Stage.SYNC, Stage.GROUPING, Stage.QUEUEING):
        tasks.run_stage(session.pk, stage)
    for queue_id in session.run.queues.order_by("pk").values_list("pk", flat=True):
        tasks.run_work_item(queue_id)
    tasks.run_stage(session.pk, Stage.FINALIZING)
    session = OptimizationSession.objects.get(pk=session.pk)
    assert session.status == SessionStatus.SUCCEEDED, session.error
    if session_fields:
        OptimizationSession.objects.filter(pk=session.pk).update(**session_fields)
        session = OptimizationSession.objects.get(pk=session.pk)
    if hasattr(mail, "outbox"):
        del mail.outbox[sent:]
    return session


def session_with_results(*, provider, period=None, groups: int = 2, sims_per_group: int = 3, seed: int | None = None,
                         notes: dict[int, str] | None = None, method: str = "certified",
                         **session_fields) -> OptimizationSession:
    """A completed session of `groups` x `sims_per_group` SIMs (see `fleet_seed`), run by the real pipeline:
    every stored figure (per SIM, per group, the totals, the bound) comes from the cost model."""
    fleet_seed(provider=provider, groups=groups, sims_per_group=sims_per_group, seed=seed, notes=notes)
    session = session_run(provider=provider, method=method, **session_fields)
    assert period is None or period == session.billing_period, "sessions run in the current billing period"
    return session
