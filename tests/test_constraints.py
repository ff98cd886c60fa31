"""The database, not only application code, refuses data that would break the domain."""
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from sessions.models import OptimizationSession
from tests import factories
from tests.factories_results import OptimizationRunFactory


def test_duplicate_iccid_per_provider_is_rejected(provider_a):
    factories.DeviceFactory(provider=provider_a, iccid="8901260000000000001")
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.DeviceFactory(provider=provider_a, iccid="8901260000000000001")


def test_same_iccid_under_another_provider_is_allowed(provider_a, provider_b):
    factories.DeviceFactory(provider=provider_a, iccid="8901260000000000001")
    factories.DeviceFactory(provider=provider_b, iccid="8901260000000000001")


def test_second_active_session_is_rejected_by_the_database(provider_a, period_a):
    OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, billing_period=period_a,
        run=OptimizationRunFactory(provider=provider_a, billing_period=period_a), status="running")
    with pytest.raises(IntegrityError), transaction.atomic():
        OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, billing_period=period_a,
        run=OptimizationRunFactory(provider=provider_a, billing_period=period_a), status="pending")


def test_a_new_session_may_start_once_the_previous_one_ended(provider_a, period_a):
    OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, billing_period=period_a,
        run=OptimizationRunFactory(provider=provider_a, billing_period=period_a), status="succeeded")
    OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, billing_period=period_a,
        run=OptimizationRunFactory(provider=provider_a, billing_period=period_a), status="failed")
    OptimizationSession.objects.create(tenant=provider_a.tenant, provider=provider_a, billing_period=period_a,
        run=OptimizationRunFactory(provider=provider_a, billing_period=period_a), status="running")
    assert OptimizationSession.objects.filter(provider=provider_a).count() == 3


@pytest.mark.parametrize("field", ["monthly_cost", "included_mb", "overage_rate", "overage_block_mb", "fee_per_sim"])
def test_negative_money_or_megabytes_on_a_rate_plan_is_rejected(provider_a, field):
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.RatePlanFactory(provider=provider_a, **{field: Decimal("-0.01")})


def test_negative_usage_is_rejected(provider_a, period_a):
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.DeviceUsageFactory(device__provider=provider_a, billing_period=period_a, usage_mb=Decimal("-1"))


def test_billing_period_cannot_end_before_it_starts(provider_a):
    import datetime as dt

    with pytest.raises(IntegrityError), transaction.atomic():
        factories.BillingPeriodFactory(provider=provider_a, start_date=dt.date(2026, 11, 30), end_date=dt.date(2026, 11, 1))


def test_cycle_end_day_outside_1_to_31_is_rejected(tenant_a):
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.ServiceProviderFactory(tenant=tenant_a, billing_cycle_end_day=32)
