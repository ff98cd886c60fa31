"""The database, not only application code, refuses catalogue and account data that would break the domain."""
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from tests import factories


@pytest.mark.parametrize("field", ["monthly_cost", "included_mb", "overage_rate", "overage_block_mb", "fee_per_sim"])
def test_negative_money_or_megabytes_on_a_rate_plan_is_rejected(provider_a, field):
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.RatePlanFactory(provider=provider_a, **{field: Decimal("-0.01")})




def test_billing_period_cannot_end_before_it_starts(provider_a):
    import datetime as dt

    with pytest.raises(IntegrityError), transaction.atomic():
        factories.BillingPeriodFactory(provider=provider_a, start_date=dt.date(2026, 11, 30), end_date=dt.date(2026, 11, 1))


def test_cycle_end_day_outside_1_to_31_is_rejected(tenant_a):
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.ServiceProviderFactory(tenant=tenant_a, billing_cycle_end_day=32)
