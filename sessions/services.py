"""Writes that move an optimization session through its life: start, stages, failure, cancel."""
from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from carrieropt.actors import SCHEDULE, command_actor
from carrieropt.errors import Conflict, NotFound, ValidationFailed
from carrieropt.options import Pooling
from carrieropt.tasks import enqueue_on_commit
from devices.customers import customer_providers
from devices.models import Customer
from optimizer import services as optimizer_services
from optimizer.models import ChargeType, Method
from rateplans.alerts import alert_raise
from rateplans.models import AlertKind, BillingPeriod, ServiceProvider
from rateplans.services import billing_period_current, billing_period_ending
from sessions.events import event_record
from sessions.models import (
    ACTIVE_STATUSES,
    EventKind,
    OptimizationSession,
    Scope,
    SessionStatus,
    Stage,
    Trigger,
)

log = logging.getLogger(__name__)

ALREADY_RUNNING = "A Carrier Optimization has not been completed so another optimization will not be triggered."
ALREADY_RUNNING_SUBJECT = "[Warning] Carrier Plan Optimization: Optimization Is Already Running"


class SessionAlreadyRunning(Conflict):
    code = "session_active"


class GuidConflict(Conflict):
    code = "session_guid_conflict"


class PeriodUnavailable(Conflict):
    """The period asked for exists but cannot be optimized now: it has not started, or it has ended and the
    start asks for a sync (a state of the period, not a malformed request: 409)."""

    code = "billing_period_unavailable"


def _choice(field: str, value, choices) -> str:
    if value not in choices.values:
        raise ValidationFailed(f"{field}: {value!r} is not one of {', '.join(choices.values)}.", field=field)
    return value


class _GuidTaken(Exception):
    """The GUID a start was given names a session already (a repeated or concurrent start)."""

    def __init__(self, session: OptimizationSession):
        self.session = session


def _period_for_start(*, provider: ServiceProvider, billing_period: BillingPeriod | None,
                      billing_period_end: dt.date | None, sync_devices: bool, now: dt.datetime) -> BillingPeriod:
    """The period a start asked for (by id or by its last day), else the current one; refused when it cannot be optimized."""
    if billing_period is not None and billing_period_end is not None:
        raise ValidationFailed("billing_period_end: give billing_period or billing_period_end, not both.",
                               field="billing_period_end")
    if billing_period is None and billing_period_end is None:
        return billing_period_current(provider=provider, at=now)
    field = "billing_period" if billing_period is not None else "billing_period_end"
    # A period the account does not have (no cycle of it ends that day, or another account's) is not found: 404.
    if billing_period is None:
        try:
            billing_period = billing_period_ending(provider=provider, end_date=billing_period_end)
        except DjangoValidationError as exc:
            raise NotFound(exc.message_dict[field][0], field=field) from None
    elif billing_period.provider_id != provider.pk:
        raise NotFound(f"billing_period: {billing_period.pk} is not a billing period of {provider.name!r}.", field=field)
    if now < billing_period.starts_at():
        raise PeriodUnavailable(f"{field}: the billing period {billing_period} has not started; there is no usage of it "
                                "to optimize yet.", field=field)
    if sync_devices and now >= billing_period.ends_at():
        raise PeriodUnavailable(f"{field}: the billing period {billing_period} has ended and the carrier reports usage "
                                "of the current cycle only; start with sync_devices false to optimize the usage stored "
                                "for it.", field=field)
    return billing_period


def _budget(value) -> int | None:
    """A change budget: a whole number >= 0, or None for no budget."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(f"max_changes: a change budget is a whole number of SIMs, 0 or more; got {value!r}.",
                               field="max_changes")
    return int(value)


def session_budget_set(*, session: OptimizationSession, max_changes: int | None) -> OptimizationSession:
    """Choose the change budget applying a completed session keeps to: a point of its frontier, or None for
    every recommended change."""
    max_changes = _budget(max_changes)
    if max_changes is not None:
        run = session.run
        if run.frontier_point(max_changes) is None:
            budgets = [p["max_changes"] for p in (run.frontier or {}).get("points", [])]
            # A schema-valid budget that names no point of this session's frontier: not found (404), like an id.
            raise NotFound(
                f"max_changes: {max_changes} is not a point of this session's frontier"
                + (f" ({', '.join(str(b) for b in budgets)})." if budgets else " (it has none)."),
                field="max_changes", extra={"budgets": budgets})
    OptimizationSession.objects.filter(pk=session.pk).update(max_changes=max_changes)
    session.max_changes = max_changes
    return session


class CrossProviderDisabled(Conflict):
    code = "cross_provider_disabled"


class PoolSpansCustomers(Conflict):
    """A customer optimization on an account whose shared plans pool account-wide: the pools it would price hold
    other customers' SIMs too, which the optimization does not see."""

    code = "pool_spans_customers"


def _customer_pools_exact(accounts: list[ServiceProvider], scope: str) -> None:
    wide = [a for a in accounts if a.pooling == Pooling.ACCOUNT]
    if wide:
        names = ", ".join(repr(a.name) for a in wide)
        raise PoolSpansCustomers(
            f"scope: {names} pool{'s' if len(wide) == 1 else ''} shared plans account-wide, so a customer's SIMs share "
            f"those pools with other customers' SIMs, which a {scope} optimization does not see: it could not price "
            f"the pools as the carrier bills them. Run a carrier optimization of the account (or set its pooling to "
            f"customer or group).", field="scope")


class CustomerNotOnAccount(Conflict):
    """The customer has no SIMs on the account(s) a customer session would optimize."""

    code = "customer_not_on_account"


def _scope_for_start(*, scope: str, provider: ServiceProvider | None, customer: Customer | None) -> list[ServiceProvider]:
    """The accounts a start covers, checked against its scope and customer: one for a carrier or customer
    session, every account of the tenant the customer has SIMs on for a cross-provider one (first: the lowest id)."""
    scope = _choice("scope", scope, Scope)
    if scope == Scope.CARRIER:
        if customer is not None:
            raise ValidationFailed("customer: a carrier optimization covers every SIM of the account; give scope "
                                   "customer or cross_provider to optimize one customer's SIMs.", field="customer")
    elif customer is None:
        raise ValidationFailed(f"customer: a {scope} optimization needs the customer whose SIMs it optimizes.",
                               field="customer")
    if scope == Scope.CROSS_PROVIDER:
        if provider is not None:
            raise ValidationFailed("provider: a cross-provider optimization covers every carrier account the customer "
                                   "has SIMs on; leave provider out.", field="provider")
        if not customer.tenant.cross_provider_enabled:
            raise CrossProviderDisabled(
                f"scope: cross-provider optimization is switched off for {customer.tenant.name!r} (its cross_provider, "
                "else the ENABLE_CROSS_PROVIDER setting).", field="scope")
        accounts = list(ServiceProvider.objects.filter(pk__in=customer_providers(customer=customer),
                                                       tenant_id=customer.tenant_id).order_by("pk"))
        if not accounts:
            raise CustomerNotOnAccount(f"customer: {customer.name!r} has no SIMs on any carrier account of the tenant.",
                                       field="customer")
        _customer_pools_exact(accounts, scope)
        return accounts
    if provider is None:
        raise ValidationFailed("provider: this field is required.", field="provider")
    if customer is not None:
        if customer.tenant_id != provider.tenant_id:
            raise NotFound(f"customer: {customer.pk} is not a customer of {provider.name!r}'s tenant.", field="customer")
        if not customer_providers(customer=customer).filter(provider_id=provider.pk).exists():
            raise CustomerNotOnAccount(f"customer: {customer.name!r} has no SIMs on {provider.name!r}.", field="customer")
        _customer_pools_exact([provider], scope)
    return [provider]


def session_start(*, provider: ServiceProvider | None = None, trigger: str = Trigger.MANUAL, method: str | None = None,
                  charge_type: str | None = None, must_beat_current: bool | None = None,
                  sync_devices: bool = True, now: dt.datetime | None = None, guid: uuid.UUID | None = None,
                  billing_period: BillingPeriod | None = None, billing_period_end: dt.date | None = None,
                  started_by: str | None = None, max_changes: int | None = None, scope: str = Scope.CARRIER,
                  customer: Customer | None = None) -> OptimizationSession:
    """Create a session and queue its first stage; refuse while one is active for the account.

    An option left None is the account's default (what a scheduled session runs with); the billing
    period is the current one unless asked for. `guid` is the caller's own id for the session (AMOP's
    OptimizationSessionGuid); see `session_start_once` for repeating a start with it.
    The refusal comes from the partial unique index, so twenty concurrent
    starts make exactly one session whatever the timing.

    scope customer: only `customer`'s SIMs on `provider`. scope cross_provider (no provider): one session per
    account the customer has SIMs on, made in one transaction (every account is busy or none is); the first
    account's is the session returned, the others point at it (`parent`), each optimizes its own account's
    SIMs on its own catalogue, and the first completes when all have, with the accounts compared side by side.
    """
    accounts = _scope_for_start(scope=scope, provider=provider, customer=customer)
    cross = scope == Scope.CROSS_PROVIDER
    if cross and billing_period is not None:
        raise ValidationFailed("billing_period: a cross-provider optimization covers several accounts, each with "
                               "its own periods; give billing_period_end (the same last day for each) or nothing.",
                               field="billing_period")
    now = now or timezone.now()
    if started_by is None:  # only what acts alone may leave it out: the schedule and the command
        started_by = {Trigger.SCHEDULED: SCHEDULE, Trigger.MANUAL: command_actor()}.get(trigger, "")
    starts = []
    for account in accounts:
        # Each account's own defaults and period (for a cross-provider start too: each has its catalogue and cycle).
        options = {
            "method": _choice("method", account.default_method if method is None else method, Method),
            "charge_type": _choice("charge_type", account.default_charge_type if charge_type is None else charge_type,
                                   ChargeType),
            "must_beat_current": account.default_must_beat_current if must_beat_current is None else bool(must_beat_current),
            "max_changes": _budget(account.default_max_changes if max_changes is None else max_changes),
            "started_by": started_by,
        }
        period = _period_for_start(provider=account, billing_period=billing_period,
                                   billing_period_end=billing_period_end, sync_devices=sync_devices, now=now)
        starts.append((account, period, options))
    try:
        with transaction.atomic():
            first = None
            for account, period, options in starts:
                run = optimizer_services.run_create(
                    provider=account, billing_period=period, method=options["method"],
                    charge_type=options["charge_type"], must_beat_current=options["must_beat_current"],
                    customer=customer)
                extra = {"guid": guid} if guid is not None and first is None else {}
                session = OptimizationSession.objects.create(
                    tenant_id=account.tenant_id, provider=account, billing_period=period, run=run, scope=scope,
                    customer=customer, parent=first, status=SessionStatus.PENDING, stage=Stage.START, trigger=trigger,
                    **options, **extra, sync_devices=sync_devices, created_at=now,
                    deadline=now + dt.timedelta(minutes=settings.SESSION_DEADLINE_MINUTES),
                )
                event_record(session=session, progress=0)
                enqueue_on_commit("sessions.tasks.run_stage", session.pk, Stage.START)
                first = first or session
    except IntegrityError:
        same = OptimizationSession.objects.filter(guid=guid).first() if guid is not None else None
        if same is not None:
            raise _GuidTaken(same) from None
        active = OptimizationSession.objects.filter(provider__in=accounts, status__in=ACTIVE_STATUSES).order_by("pk").first()
        if active is None:
            raise
        busy = active.provider
        # One e-mail per running session, however many starts it refuses (ALERT_DEDUP_MINUTES).
        alert_raise(provider=busy, kind=AlertKind.ALREADY_RUNNING, key=f"session:{active.pk}",
                    subject=ALREADY_RUNNING_SUBJECT,
                    body=f"{ALREADY_RUNNING}\n\nCarrier account: {busy.name}\nRunning session: {active.guid} "
                         f"(started {active.created_at:%Y-%m-%d %H:%M %Z}, {active.get_stage_display()}, "
                         f"{active.progress} %).\nRefused start: {trigger}" + (f" by {started_by}" if started_by else "") + ".\n")
        message = ALREADY_RUNNING if len(accounts) == 1 else f"{ALREADY_RUNNING} (carrier account {busy.name!r})"
        raise SessionAlreadyRunning(message, extra={"active_session": str(active.guid)}) from None
    return first


def session_start_once(*, guid: uuid.UUID, provider: ServiceProvider | None = None,
                       **start) -> tuple[OptimizationSession, bool]:
    """Start the session `guid` names, or answer it when it exists: (session, created).

    The same GUID twice is the same session, whatever became of it, so a caller that retries a start
    (AMOP after a timeout) never makes a second one. A GUID that names another account's session, or
    this account's with other options than asked for now, is a conflict, not a new session."""
    session = OptimizationSession.objects.filter(guid=guid).select_related("billing_period").first()
    if session is None:
        try:
            return session_start(provider=provider, guid=guid, **start), True
        except _GuidTaken as taken:  # a concurrent start with the same GUID won
            session = taken.session
    if provider is not None and session.provider_id != provider.pk:
        raise GuidConflict(f"session_guid: {guid} already names a session of another carrier account; a GUID names "
                           "one session.", field="session_guid")
    asked = {"method": start.get("method"), "charge_type": start.get("charge_type"),
             "must_beat_current": start.get("must_beat_current"), "sync_devices": start.get("sync_devices"),
             "billing_period": getattr(start.get("billing_period"), "pk", None),
             "scope": start.get("scope", Scope.CARRIER), "customer": getattr(start.get("customer"), "pk", None)}
    stored = {"method": session.method, "charge_type": session.charge_type, "must_beat_current": session.must_beat_current,
              "sync_devices": session.sync_devices, "billing_period": session.billing_period_id,
              "scope": session.scope, "customer": session.customer_id}
    end = start.get("billing_period_end")
    differ = sorted(k for k, v in asked.items() if (v is not None or k == "customer") and v != stored[k])
    if end is not None and end != session.billing_period.end_date:
        differ.append("billing_period_end")
    if differ:
        raise GuidConflict(f"session_guid: {guid} already names session {session.pk} of this account, started with other "
                           f"{', '.join(differ)}; a GUID names one session.", field="session_guid",
                           extra={"session": str(session.guid)})
    return session, False


def session_fail(*, session_id: int, message: str) -> OptimizationSession | None:
    """End a session as failed with an ErrorMessage event, unless it already ended."""
    with transaction.atomic():
        session = OptimizationSession.objects.select_for_update().filter(pk=session_id, status__in=ACTIVE_STATUSES).first()
        if session is None:
            return None
        now = timezone.now()
        session.status = SessionStatus.FAILED
        session.error = message
        session.finished_at = now
        session.save(update_fields=["status", "error", "finished_at"])
        optimizer_services.run_stop(run_id=session.run_id)
        event_record(session=session, kind=EventKind.ERROR, progress=session.progress, error_message=message)
    log.warning("session %s failed: %s", session_id, message)
    session_failed_alert(session=session)
    # A cross-provider optimization ends as one: an account that failed fails it, and it stops every account.
    if session.parent_id is not None:
        session_fail(session_id=session.parent_id, message=f"{session.provider.name}: {message}")
    for child_id in session.children.filter(status__in=ACTIVE_STATUSES).values_list("pk", flat=True):
        session_fail(session_id=child_id, message=f"The cross-provider session {session.guid} failed: {message}")
    return session


def session_failed_alert(*, session: OptimizationSession) -> None:
    """E-mail why a session failed and what was kept (nothing it had not finished is half-written)."""
    provider = session.provider
    tz = provider.tz
    previous = (OptimizationSession.objects.filter(provider=provider, status=SessionStatus.SUCCEEDED)
                .exclude(pk=session.pk).order_by("-finished_at").first())

    def local(value):
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if value else "never"

    kept = [
        f"- SIMs and usage on file as last synced (devices {local(provider.last_device_sync_at)}, "
        f"usage {local(provider.last_usage_sync_at)}); a sync that failed left them unchanged.",
        "- No rate plan was changed on the carrier by this session.",
        (f"- The last completed session, {previous.guid} (finished {local(previous.finished_at)}), keeps its results "
         f"and report." if previous else "- This account has no completed session yet."),
    ]
    body = "\n".join([
        f"The rate plan optimization of {provider.name} ({session.tenant.name}) failed.",
        "",
        f"Session: {session.guid}",
        f"Billing period: {session.billing_period.start_date.isoformat()} to {session.billing_period.end_date.isoformat()}",
        f"Started: {local(session.started_at or session.created_at)}; failed: {local(session.finished_at)}",
        f"Reached: {session.get_stage_display()} ({session.progress} %), trigger {session.get_trigger_display()}",
        "",
        f"Why: {session.error}",
        "",
        "What was kept:",
        *kept,
    ])
    alert_raise(provider=provider, kind=AlertKind.SESSION_FAILED, key=f"session:{session.pk}",
                subject=f"Optimization failed for {provider.name}: {session.error}"[:300], body=body)


def session_cancel(*, session: OptimizationSession, cancelled_by: str) -> OptimizationSession:
    """Cancel an active session; a part of a cross-provider session cancels all of it (every account's)."""
    with transaction.atomic():
        locked = OptimizationSession.objects.select_for_update().get(pk=session.pk)
        if locked.status not in ACTIVE_STATUSES:
            raise Conflict(f"Session {locked.guid} has already ended ({locked.status}).", field="status")
        error = f"Cancelled by {cancelled_by or 'an operator'}."
        _cancel(locked, cancelled_by=cancelled_by, error=error)
        root_id = locked.parent_id or locked.pk
        family = (OptimizationSession.objects.select_for_update().filter(Q(pk=root_id) | Q(parent_id=root_id))
                  .exclude(pk=locked.pk).filter(status__in=ACTIVE_STATUSES).order_by("pk"))
        for other in family:
            _cancel(other, cancelled_by=cancelled_by, error=f"{error} (with the cross-provider session of "
                                                             f"{locked.provider.name})")
    return locked


def _cancel(session: OptimizationSession, *, cancelled_by: str, error: str) -> None:
    session.status = SessionStatus.CANCELLED
    session.finished_at = timezone.now()
    session.cancelled_by = cancelled_by
    session.error = error
    session.save(update_fields=["status", "finished_at", "error", "cancelled_by"])
    optimizer_services.run_stop(run_id=session.run_id)
    event_record(session=session, kind=EventKind.ERROR, progress=session.progress, error_message=session.error)
