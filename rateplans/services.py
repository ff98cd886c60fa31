"""Writes to the catalogue: the billing period an account is in, carrier accounts, rate and communication plans."""
from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from carrieropt.models import Tenant
from rateplans.cycles import cycle_bounds
from rateplans.models import CREDENTIAL_TARGET_FIELDS, BillingPeriod, CommunicationPlan, RatePlan, ServiceProvider


def billing_period_current(*, provider: ServiceProvider, at: dt.datetime | None = None) -> BillingPeriod:
    """The period containing `at` in the account's billing time zone, created on first use."""
    at = at or timezone.now()
    local_day = at.astimezone(provider.tz).date()
    start, end = cycle_bounds(local_day, provider.billing_cycle_end_day)
    period, _ = BillingPeriod.objects.get_or_create(provider=provider, end_date=end, defaults={"start_date": start})
    return period


def billing_period_ending(*, provider: ServiceProvider, end_date: dt.date) -> BillingPeriod:
    """The account's cycle ending on `end_date` (created on first use); a date no cycle ends on is refused."""
    start, end = cycle_bounds(end_date, provider.billing_cycle_end_day)
    if end != end_date:
        raise ValidationError({"billing_period_end": [
            f"{end_date.isoformat()} is not the last day of a billing cycle of {provider.name!r} (its cycles end on "
            f"day {provider.billing_cycle_end_day} of the month; the cycle containing that day ends {end.isoformat()})."]})
    period, _ = BillingPeriod.objects.get_or_create(provider=provider, end_date=end, defaults={"start_date": start})
    return period


# Catalogue writes. Each validates the whole row (field validators and DB
# constraints, via full_clean) and raises Django's ValidationError with messages
# per field, so every interface (API, admin, commands) reports the same problems.

PROVIDER_WRITABLE = frozenset({
    "name", "integration", "portal_type", "api_base_url", "username", "api_key", "billing_timezone", "currency",
    "billing_cycle_end_day", "optimization_start_hour", "auto_apply", "prorates", "pooling", "active", "report_recipients",
    "rate_limit_per_second", "max_concurrency", "max_pages",
    "default_method", "default_charge_type", "default_must_beat_current", "default_max_changes",
})
RATE_PLAN_WRITABLE = frozenset({
    "code", "name", "monthly_cost", "included_mb", "overage_rate", "overage_block_mb", "fee_per_sim", "pooled",
    "plan_type", "active",
})


def _assign(obj, fields: dict, writable: frozenset) -> None:
    unknown = sorted(set(fields) - writable)
    if unknown:
        raise ValidationError({name: ["This field cannot be written."] for name in unknown})
    for name, value in fields.items():
        setattr(obj, name, value)


def _save(obj) -> None:
    obj.full_clean()
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError as exc:
        # A concurrent write won the unique constraint between full_clean and save.
        raise ValidationError(f"This {obj._meta.verbose_name} conflicts with one saved at the same moment; retry.") from exc


def provider_create(*, tenant: Tenant, **fields) -> ServiceProvider:
    provider = ServiceProvider(tenant=tenant)
    _assign(provider, fields, PROVIDER_WRITABLE)
    _save(provider)
    return provider


def provider_update(*, provider: ServiceProvider, **fields) -> ServiceProvider:
    """Blank or missing api_key keeps the stored key (it is write-only and never read back),
    unless the update changes where that key would be sent."""
    if not fields.get("api_key"):
        fields.pop("api_key", None)
        moved = sorted(f for f in CREDENTIAL_TARGET_FIELDS if f in fields and fields[f] != getattr(provider, f))
        if moved:
            raise ValidationError({"api_key": [ValidationError(
                f"Changing {', '.join(moved)} needs the API key again: the stored key is only sent where it was entered for.",
                code="key_needed")]})
    _assign(provider, fields, PROVIDER_WRITABLE)
    _save(provider)
    return provider


def rate_plan_create(*, provider: ServiceProvider, **fields) -> RatePlan:
    plan = RatePlan(provider=provider)
    _assign(plan, fields, RATE_PLAN_WRITABLE)
    _save(plan)
    return plan


def rate_plan_update(*, rate_plan: RatePlan, **fields) -> RatePlan:
    _assign(rate_plan, fields, RATE_PLAN_WRITABLE)
    _save(rate_plan)
    return rate_plan


def _check_same_provider(provider: ServiceProvider, rate_plans) -> None:
    foreign = sorted(p.code for p in rate_plans if p.provider_id != provider.pk)
    if foreign:
        raise ValidationError({"rate_plans": [f"Rate plans of another carrier account: {', '.join(foreign)}."]})


@transaction.atomic
def communication_plan_create(*, provider: ServiceProvider, name: str, rate_plans=()) -> CommunicationPlan:
    _check_same_provider(provider, rate_plans)
    comm = CommunicationPlan(provider=provider, name=name)
    _save(comm)
    comm.rate_plans.set(rate_plans)
    return comm


@transaction.atomic
def communication_plan_update(*, communication_plan: CommunicationPlan, name: str | None = None,
                              rate_plans=None) -> CommunicationPlan:
    if name is not None:
        communication_plan.name = name
        _save(communication_plan)
    if rate_plans is not None:
        _check_same_provider(communication_plan.provider, rate_plans)
        communication_plan.rate_plans.set(rate_plans)
    return communication_plan
