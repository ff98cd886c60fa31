"""REST API of the SIMs: list with filters (paginated) and detail; pins (SIMs kept on their plan)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from carrieropt.api.base import TenantApi, as_api_validation
from devices import customers, pins
from devices.models import Customer, Device, DevicePin
from devices.serializers import (
    CustomerFilter,
    CustomerOut,
    CustomerUpdateIn,
    DeviceFilter,
    DeviceOut,
    PinCreateIn,
    PinFilter,
    PinOut,
)


def tenant_customer(view: TenantApi, customer_id: int, *, field: str = "customer") -> Customer:
    """The caller's customer with this id; another tenant's (or no such) customer is a 404 naming the field."""
    customer = Customer.objects.filter(tenant__in=view.tenants, pk=customer_id).first()
    if customer is None:
        raise ValidationError({field: [f"No customer {customer_id} among your tenant's customers."]},
                              code="does_not_exist")
    return customer


class DeviceListApi(TenantApi, generics.ListAPIView):
    """SIMs of your carrier accounts, filtered by account, plan, status, customer or ICCID prefix."""

    serializer_class = DeviceOut

    def get_queryset(self):
        filters = self.query(DeviceFilter)
        qs = (Device.objects.filter(provider__tenant__in=self.tenants).select_related("customer")
              .order_by("provider_id", "iccid"))
        if "customer" in filters:
            qs = qs.filter(customer=tenant_customer(self, filters["customer"]))
        if "provider" in filters:
            qs = qs.filter(provider_id=filters["provider"])
        if "rate_plan" in filters:
            qs = qs.filter(rate_plan_id=filters["rate_plan"])
        if "rate_plan_code" in filters:
            qs = qs.filter(rate_plan_code=filters["rate_plan_code"])
        if "status" in filters:
            qs = qs.filter(status=filters["status"])
        if "iccid_prefix" in filters:
            qs = qs.filter(iccid__startswith=filters["iccid_prefix"])
        return qs

    @extend_schema(parameters=[DeviceFilter])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class DeviceDetailApi(TenantApi, generics.RetrieveAPIView):
    """One SIM."""

    serializer_class = DeviceOut

    def get_queryset(self):
        return Device.objects.filter(provider__tenant__in=self.tenants).select_related("customer")


class CustomerListApi(TenantApi, generics.ListAPIView):
    """Your tenants' customers (the carrier's `customer` of each SIM, synced), with their SIM counts and the AMOP
    CustomerId and SiteId each is mapped to; filter by name or by AMOP id to find yours."""

    serializer_class = CustomerOut

    def get_queryset(self):
        filters = self.query(CustomerFilter)
        qs = customers.customers_with_sims(tenants=self.tenants)
        for name in ("name", "amop_customer_id", "amop_site_id"):
            if name in filters:
                qs = qs.filter(**{name: filters[name]})
        return qs

    @extend_schema(parameters=[CustomerFilter])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class CustomerDetailApi(TenantApi, generics.RetrieveAPIView):
    """One customer; PATCH maps it to AMOP's CustomerId and SiteId (409 when another customer has the id)."""

    serializer_class = CustomerOut

    def get_queryset(self):
        return customers.customers_with_sims(tenants=self.tenants)

    @extend_schema(request=CustomerUpdateIn, responses={200: CustomerOut})
    def patch(self, request, pk):
        customer = self.get_object()
        data = CustomerUpdateIn(customer, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        with as_api_validation():
            customers.customer_update(customer=customer, **data.validated_data)
        return Response(CustomerOut(self.get_object()).data)


class PinListApi(TenantApi, generics.ListAPIView):
    """SIMs pinned to their rate plan in your carrier accounts; POST pins one (it is never moved by a session)."""

    serializer_class = PinOut

    def get_queryset(self):
        filters = self.query(PinFilter)
        qs = (DevicePin.objects.filter(device__provider__tenant__in=self.tenants)
              .select_related("device__rate_plan", "pinned_by").order_by("device__provider_id", "device__iccid"))
        if "provider" in filters:
            qs = qs.filter(device__provider_id=filters["provider"])
        return qs

    @extend_schema(parameters=[PinFilter])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=PinCreateIn, responses={201: PinOut})
    def post(self, request):
        if not pins.can_pin(request.user):
            raise PermissionDenied(pins.PIN_REFUSED)
        data = PinCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        device = Device.objects.filter(provider__tenant__in=self.tenants, provider_id=values["provider"],
                                       iccid=values["iccid"]).select_related("rate_plan").first()
        if device is None:
            raise ValidationError({"iccid": [f"No SIM {values['iccid']} in carrier account {values['provider']}."]},
                                  code="does_not_exist")
        pin = pins.device_pin(device=device, reason=values["reason"], user=request.user)
        return Response(PinOut(pin).data, status=status.HTTP_201_CREATED)


class PinDetailApi(TenantApi, generics.RetrieveDestroyAPIView):
    """One pin; DELETE unpins the SIM (the next session may move it again)."""

    serializer_class = PinOut

    def get_queryset(self):
        return DevicePin.objects.filter(device__provider__tenant__in=self.tenants).select_related(
            "device__rate_plan", "pinned_by")

    def perform_destroy(self, instance):
        # Looked up first: another tenant's pin is a 404 before any permission is looked at.
        if not pins.can_unpin(self.request.user):
            raise PermissionDenied(pins.PIN_REFUSED)
        pins.device_unpin(pin=instance)
