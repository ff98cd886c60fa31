"""The database, not only application code, keeps one active session per carrier account."""

import pytest
from django.db import IntegrityError, transaction

from sessions.models import OptimizationSession
from tests.factories_results import OptimizationRunFactory


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

