"""Helpers of the push tests: a demo fleet on a simulator, planned moves, the carrier's own logs."""
import datetime as dt
from collections import Counter

import pytest

from devices.demo import demo_seed
from devices.models import Device
from pushes.create import PlannedChange
from rateplans.services import billing_period_current
from sessions.models import OptimizationSession
from sessions.services import session_start

# For tests that need no commit (nothing queued has to run): a rolled-back test transaction is much cheaper.
NO_COMMITS = pytest.mark.django_db


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
    """PUTs the carrier took up, by ICCID. A throttled one (Rate Limit Exceeded) was refused before it was looked
    at; the client sends it again within the same send, so it is not counted."""
    return Counter(r["path"].rsplit("/", 1)[1] for r in server.carrier.request_log("/rws/api/v1/devices/")
                   if r["method"] == "PUT" and not r.get("throttled"))
