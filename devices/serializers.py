"""API shapes of the SIMs."""
from __future__ import annotations

from rest_framework import serializers

from carrieropt.api.base import MAX_ID, StrictInput
from devices.models import Customer, Device, DevicePin, DeviceStatus


class DeviceOut(serializers.ModelSerializer):
    customer_name = serializers.CharField(source="customer.name", allow_null=True, default=None,
                                          help_text="The SIM's customer as the carrier names it.")

    class Meta:
        model = Device
        fields = ["id", "provider", "iccid", "status", "customer", "customer_name", "rate_plan", "rate_plan_code",
                  "communication_plan", "communication_plan_name", "msisdn", "sim_notes", "date_activated", "date_added", "date_updated",
                  "missing_since", "deactivated_at", "synced_at"]
        read_only_fields = fields


class DeviceFilter(serializers.Serializer):
    provider = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    rate_plan = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="Rate plan id.")
    rate_plan_code = serializers.CharField(required=False, max_length=120, help_text="The carrier's rate plan name.")
    status = serializers.ChoiceField(choices=DeviceStatus.choices, required=False)
    iccid_prefix = serializers.RegexField(r"^\d{1,20}$", required=False, help_text="Leading digits of the ICCID.")
    customer = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID,
                                        help_text="Customer id: only this customer's SIMs.")


class CustomerOut(serializers.ModelSerializer):
    sims = serializers.IntegerField(read_only=True, help_text="SIMs of this customer on the tenant's accounts.")

    class Meta:
        model = Customer
        fields = ["id", "tenant", "name", "amop_customer_id", "amop_site_id", "sims", "created_at"]
        read_only_fields = ["id", "tenant", "name", "sims", "created_at"]


class CustomerFilter(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200, help_text="The customer's name, exactly.")
    amop_customer_id = serializers.CharField(required=False, max_length=64, help_text="AMOP's CustomerId.")
    amop_site_id = serializers.CharField(required=False, max_length=64, help_text="AMOP's SiteId.")


class PinOut(serializers.ModelSerializer):
    iccid = serializers.CharField(source="device.iccid")
    provider = serializers.IntegerField(source="device.provider_id")
    rate_plan = serializers.CharField(source="device.rate_plan.code", allow_null=True, default=None,
                                      help_text="The plan the SIM keeps.")
    pinned_by = serializers.CharField(source="pinned_by.username", allow_null=True, default=None)

    class Meta:
        model = DevicePin
        fields = ["id", "device", "iccid", "provider", "rate_plan", "reason", "pinned_by", "pinned_at"]
        read_only_fields = fields


class PinCreateIn(serializers.Serializer):
    provider = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="Carrier account id.")
    iccid = serializers.RegexField(r"^\d{19,20}$", error_messages={"invalid": "An ICCID is 19 or 20 digits."})
    reason = serializers.CharField(max_length=2000, help_text="Why the SIM must keep its plan.")


class PinFilter(serializers.Serializer):
    provider = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class CustomerUpdateIn(StrictInput, serializers.ModelSerializer):
    """AMOP's ids of a customer (an empty string removes the mapping)."""

    class Meta:
        model = Customer
        fields = ["amop_customer_id", "amop_site_id"]
        extra_kwargs = {name: {"required": False} for name in fields}
        validators = []
