"""API shapes of the SIMs."""
from __future__ import annotations

from rest_framework import serializers

from carrieropt.api.base import MAX_ID
from devices.models import Device, DeviceStatus


class DeviceOut(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "provider", "iccid", "status", "rate_plan", "rate_plan_code", "communication_plan",
                  "communication_plan_name", "msisdn", "sim_notes", "date_activated", "date_added", "date_updated",
                  "missing_since", "synced_at"]
        read_only_fields = fields


class DeviceFilter(serializers.Serializer):
    provider = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    rate_plan = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="Rate plan id.")
    rate_plan_code = serializers.CharField(required=False, max_length=120, help_text="The carrier's rate plan name.")
    status = serializers.ChoiceField(choices=DeviceStatus.choices, required=False)
    iccid_prefix = serializers.RegexField(r"^\d{1,20}$", required=False, help_text="Leading digits of the ICCID.")
