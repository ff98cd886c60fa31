"""The database, not only application code, refuses SIM data that would break the domain."""
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from tests import factories


def test_duplicate_iccid_per_provider_is_rejected(provider_a):
    factories.DeviceFactory(provider=provider_a, iccid="8901260000000000001")
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.DeviceFactory(provider=provider_a, iccid="8901260000000000001")



def test_same_iccid_under_another_provider_is_allowed(provider_a, provider_b):
    factories.DeviceFactory(provider=provider_a, iccid="8901260000000000001")
    factories.DeviceFactory(provider=provider_b, iccid="8901260000000000001")



def test_negative_usage_is_rejected(provider_a, period_a):
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.DeviceUsageFactory(device__provider=provider_a, billing_period=period_a, usage_mb=Decimal("-1"))

