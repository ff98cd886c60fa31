"""REST API of the SIMs: list with filters (paginated) and detail."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics

from carrieropt.api.base import TenantApi
from devices.models import Device
from devices.serializers import DeviceFilter, DeviceOut


class DeviceListApi(TenantApi, generics.ListAPIView):
    """SIMs of your carrier accounts, filtered by account, plan, status or ICCID prefix."""

    serializer_class = DeviceOut

    def get_queryset(self):
        filters = self.query(DeviceFilter)
        qs = Device.objects.filter(provider__tenant__in=self.tenants).order_by("provider_id", "iccid")
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
        return Device.objects.filter(provider__tenant__in=self.tenants)
