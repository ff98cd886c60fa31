"""Applying a session's recommendations: its change list, and the manual and automatic triggers of a push."""
from __future__ import annotations

import datetime as dt
import logging

from django.db.models import Subquery

from carrieropt.errors import Conflict
from carrieropt.tasks import enqueue_on_commit
from devices.models import ChangeStatus, RatePlanChange, RatePlanPush
from devices.push import PlannedChange, push_create
from optimizer.models import DeviceAssignment
from sessions.models import OptimizationSession, SessionStatus, Stage

log = logging.getLogger(__name__)


class SessionNotComplete(Conflict):
    code = "session_not_complete"


def session_changes(*, session: OptimizationSession) -> list[PlannedChange]:
    """The SIMs whose recommended plan differs from the plan the optimization saw, minus those an
    earlier push of this session already applied (so applying again only retries what is left)."""
    done = RatePlanChange.objects.filter(push__session=session, status=ChangeStatus.APPLIED).values("device_id")
    rows = (DeviceAssignment.objects.filter(run_id=session.run_id, changed=True)
            .exclude(device_id__in=Subquery(done))
            .values_list("device_id", "iccid", "current_plan_id", "current_plan__code", "device__rate_plan_code",
                         "recommended_plan_id", "recommended_plan__code"))
    changes = []
    for device_id, iccid, from_id, from_code, device_code, to_id, to_code in rows:
        # A SIM whose plan is not in the catalogue had no current_plan; the carrier's name for it is kept on the device.
        from_code = from_code or device_code
        if from_code != to_code:
            changes.append(PlannedChange(device_id=device_id, iccid=iccid, from_plan_id=from_id,
                                         from_plan_code=from_code or "", to_plan_id=to_id, to_plan_code=to_code))
    return changes


def session_apply(*, session: OptimizationSession, trigger: str, now: dt.datetime | None = None) -> RatePlanPush:
    """Push a completed session's recommended plans to the carrier (Go/No-Go decided by the push).

    Raises SessionNotComplete or PushAlreadyRunning (both 409 in the API).
    """
    session = OptimizationSession.objects.select_related("provider", "billing_period__provider").get(pk=session.pk)
    if session.status != SessionStatus.SUCCEEDED or session.stage != Stage.COMPLETE:
        raise SessionNotComplete(
            f"Session {session.guid} is {session.status} at stage {session.stage}; only a completed session's "
            f"recommendations can be applied.", field="status")
    return push_create(provider=session.provider, changes=session_changes(session=session),
                       period=session.billing_period, session_id=session.pk, trigger=trigger, now=now)


def session_apply_after_complete(*, session: OptimizationSession) -> bool:
    """Queue the automatic push of a session that just completed, when its account asks for one.

    Called inside the transaction that completes the session, so the push is
    queued exactly when the completion commits.
    """
    provider = session.provider
    if not (provider.auto_apply and provider.is_jasper_family):
        return False
    enqueue_on_commit("sessions.tasks.apply_session", session.pk, "auto")
    return True
