"""factory-boy factories for every model a test sets up."""
import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from carrieropt.models import Tenant
from devices.models import Device, DeviceUsage
from rateplans.models import BillingPeriod, CommunicationPlan, RatePlan, ServiceProvider


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")


class ServiceProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceProvider

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Carrier account {n}")
    integration = "Jasper"
    api_base_url = "http://127.0.0.1:8765"
    username = "api-user"
    api_key = factory.Sequence(lambda n: f"sk-test-secret-{n:06d}")
    billing_timezone = "America/Chicago"
    billing_cycle_end_day = 31
    report_recipients = "ops@example.com"


class BillingPeriodFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BillingPeriod

    provider = factory.SubFactory(ServiceProviderFactory)
    start_date = dt.date(2026, 11, 1)
    end_date = dt.date(2026, 11, 30)


class RatePlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RatePlan

    provider = factory.SubFactory(ServiceProviderFactory)
    code = factory.Sequence(lambda n: f"PLAN-{n}")
    monthly_cost = Decimal("5.00")
    included_mb = Decimal("50")
    overage_rate = Decimal("0.10")
    overage_block_mb = Decimal("1")
    pooled = False


class CommunicationPlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CommunicationPlan
        skip_postgeneration_save = True  # the hook writes the M2M itself

    provider = factory.SubFactory(ServiceProviderFactory)
    name = factory.Sequence(lambda n: f"CP-{n}")

    @factory.post_generation
    def rate_plans(self, create, extracted, **kwargs):
        if create and extracted:
            self.rate_plans.set(extracted)


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    provider = factory.SubFactory(ServiceProviderFactory)
    iccid = factory.Sequence(lambda n: f"89012600{n:011d}")
    status = "ACTIVATED"


class DeviceUsageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceUsage

    device = factory.SubFactory(DeviceFactory)
    billing_period = factory.SubFactory(BillingPeriodFactory)
    ctd_bytes = 10 * 1024 * 1024
    usage_mb = Decimal("10.000")
    projected_mb = Decimal("12.000")
