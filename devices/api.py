"""REST API of the SIMs: list with filters (paginated) and detail; pins (SIMs kept on their plan)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from carrieropt.api.base import TenantApi
from devices import pins
from devices.models import Device, DevicePin
from devices.serializers import DeviceFilter, DeviceOut, PinCreateIn, PinFilter, PinOut


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
        pins.device_unpin(pin=instance)
