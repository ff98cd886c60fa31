"""A session's recommendations as a push: its change list, and the manual and automatic ways to apply it."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from carrieropt.actors import AUTOMATIC
from carrieropt.errors import Conflict
from carrieropt.tasks import enqueue_on_commit
from devices.models import DevicePin
from optimizer.models import DeviceAssignment
from pushes.create import PlannedChange, PushAlreadyRunning, push_create
from pushes.models import ChangeStatus, RatePlanChange, RatePlanPush
from sessions.models import COMPLETED_STATUSES, OptimizationSession, SessionStatus, Stage

log = logging.getLogger(__name__)

SESSION_APPLY_TASK = "pushes.tasks.session_apply_task"


class SessionNotComplete(Conflict):
    code = "session_not_complete"


class BudgetNotAPoint(Conflict):
    code = "budget_not_a_point"


def _changes(*, session: OptimizationSession):
    """The assignment rows a push of the session sends (session_changes, session_changes_summary): the SIMs whose
    recommended plan differs from the plan the optimization saw, minus those an earlier push of this session
    already applied (so applying again only retries what is left), and minus SIMs pinned since the session ran
    (a pin means the SIM keeps its plan).

    With a change budget (session.max_changes) only the moves of that budget's answer, exactly the one its
    frontier point priced: those ranked below the point's changes.

    The push's only definition of a session's changes: keep it the only one.
    """
    done = RatePlanChange.objects.filter(push__session=session, status=ChangeStatus.APPLIED).values("device_id")
    rows = DeviceAssignment.objects.filter(run_id=session.run_id, changed=True)
    if session.max_changes is not None:
        point = session.run.frontier_point(session.max_changes)
        if point is None:
            raise BudgetNotAPoint(
                f"Session {session.guid} has change budget {session.max_changes}, which is not a point of its "
                f"frontier; choose one of its points (or no budget) before applying.", field="max_changes")
        rows = rows.filter(change_rank__lt=point["changes"])
    # A SIM an operator pinned after the session ran keeps its plan: it is never pushed. A SIM whose plan is not in
    # the catalogue had no current_plan; the carrier's name for it is kept on the device: already on the
    # recommended plan's code, it is no change. (Each as a subquery of its few rows: joining every change to its
    # device took most of a second at a million SIMs.)
    pinned = DevicePin.objects.values("device_id")
    same_code = rows.filter(current_plan__isnull=True, device__rate_plan_code=F("recommended_plan__code")).values("pk")
    return (rows.exclude(device_id__in=Subquery(done)).exclude(device_id__in=Subquery(pinned))
            .exclude(pk__in=Subquery(same_code)))


def session_changes(*, session: OptimizationSession) -> list[PlannedChange]:
    """The changes a push of the session sends (_changes), one PlannedChange per SIM."""
    rows = _changes(session=session).annotate(
        from_code=Coalesce("current_plan__code", "device__rate_plan_code", Value(""))).values_list(
        "device_id", "iccid", "current_plan_id", "from_code", "recommended_plan_id", "recommended_plan__code",
        "current_cost", "recommended_cost")
    return [PlannedChange(device_id=device_id, iccid=iccid, from_plan_id=from_id, from_plan_code=from_code or "",
                          to_plan_id=to_id, to_plan_code=to_code, saving=None if before is None else before - after)
            for device_id, iccid, from_id, from_code, to_id, to_code, before, after in rows]


@dataclass(frozen=True)
class ChangesSummary:
    changes: int
    saving: Decimal  # of the changes whose current cost is known


def session_changes_summary(*, session: OptimizationSession) -> ChangesSummary:
    """How many changes a push of the session sends and what they save, counted by the database (the apply page
    of a million-SIM session: loading its 530k changes took 4.3 s)."""
    totals = _changes(session=session).aggregate(changes=Count("pk"), saving=Sum("saving"))
    return ChangesSummary(changes=totals["changes"], saving=totals["saving"] or Decimal(0))


def session_apply(*, session: OptimizationSession, trigger: str, applied_by: str = "",
                  now: dt.datetime | None = None) -> RatePlanPush:
    """Push a completed session's recommended plans to the carrier (Go/No-Go decided by the push).

    Raises SessionNotComplete or PushAlreadyRunning (both 409 in the API).
    """
    session = OptimizationSession.objects.select_related("provider", "billing_period__provider", "run").get(pk=session.pk)
    if session.status not in COMPLETED_STATUSES or session.stage != Stage.COMPLETE:
        raise SessionNotComplete(
            f"Session {session.guid} is {session.status} at stage {session.stage}; only a completed session's "
            f"recommendations can be applied.", field="status")
    return push_create(provider=session.provider, changes=session_changes(session=session),
                       period=session.billing_period, session_id=session.pk, trigger=trigger, applied_by=applied_by,
                       now=now)


def session_apply_after_complete(*, session: OptimizationSession) -> bool:
    """Queue the automatic push of a session that just completed, when its account asks for one.

    Called inside the transaction that completes the session (sessions' session_completed
    signal), so the push is queued exactly when the completion commits.
    """
    provider = session.provider
    if not (provider.auto_apply and provider.is_jasper_family):
        return False
    if session.status != SessionStatus.SUCCEEDED:
        # Succeeded with warnings (too few SIMs had usage): an operator reviews it and applies it by hand.
        log.warning("session %s: automatic rate plan update refused: %s", session.pk, session.warnings)
        return False
    enqueue_on_commit(SESSION_APPLY_TASK, session.pk, "auto")
    return True


def session_apply_queued(*, session: OptimizationSession, trigger: str = "auto") -> RatePlanPush | None:
    """The queued apply of a session (the automatic one after completion): at most one automatic push per session."""
    if trigger == "auto" and session.status != SessionStatus.SUCCEEDED:
        return None  # with warnings: never applied automatically
    if trigger == "auto" and RatePlanPush.objects.filter(session=session, trigger="auto").exists():
        # A redelivered task: the automatic push already happened (or was a No-Go); once is the rule.
        return None
    try:
        return session_apply(session=session, trigger=trigger, applied_by=AUTOMATIC if trigger == "auto" else trigger)
    except PushAlreadyRunning as exc:
        # Not lost: the session can be applied again from the API, the admin or the command.
        log.warning("session %s: automatic rate plan update not started: %s", session.pk, exc.message)
        return None
