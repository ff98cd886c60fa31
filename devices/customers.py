"""The tenant's customers: reads for the API and pages, and the one write a person makes (AMOP's ids)."""
from __future__ import annotations

from django.db.models import Count, QuerySet

from devices.models import Customer, Device


def customers_with_sims(*, tenants) -> QuerySet[Customer]:
    """The customers of `tenants` (a queryset of tenant ids), each with its number of SIMs."""
    return Customer.objects.filter(tenant__in=tenants).annotate(sims=Count("devices")).order_by("tenant_id", "name")


def customer_providers(*, customer: Customer) -> QuerySet:
    """Ids of the carrier accounts the customer has SIMs on (a subquery; the customer's own index serves it)."""
    return Device.objects.filter(customer=customer).order_by().values("provider_id").distinct()


def customer_update(*, customer: Customer, **fields) -> Customer:
    """Map a customer to AMOP's ids (amop_customer_id, amop_site_id); the name is the carrier's, not edited here.
    Raises Django's ValidationError (code "unique" when another customer of the tenant has the id)."""
    for name, value in fields.items():
        setattr(customer, name, (value or "").strip())
    customer.full_clean()
    customer.save(update_fields=[*fields])
    return customer
