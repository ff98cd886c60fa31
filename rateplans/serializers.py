"""API input and output shapes of the catalogue: carrier accounts, rate plans, communication plans."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from rest_framework import serializers

from carrieropt.api.base import StrictInput
from rateplans.models import (
    SYNCABLE_INTEGRATION_CHOICES,
    CommunicationPlan,
    RatePlan,
    ServiceProvider,
    validate_syncable_integration,
)

PROVIDER_FIELDS = [
    "name", "integration", "portal_type", "api_base_url", "username", "billing_timezone", "currency", "billing_cycle_end_day",
    "optimization_start_hour", "auto_apply", "prorates", "pooling", "active", "report_recipients", "rate_limit_per_second",
    "max_concurrency", "max_pages", "default_method", "default_charge_type", "default_must_beat_current", "default_max_changes",
]
# What the schema promises for a carrier URL, and the server checks besides Django's URL rules: https to a
# host name (labels of 1-63, at most 253 in all, a letter TLD), or http(s) to this machine; a port; a path.
CARRIER_URL_PATTERN = (
    r"^(?:https://(?=[^:/]{1,253}(?:[:/]|$))[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}"
    r"[a-z0-9])?)*\.[a-z]{2,63}|https?://(?:localhost|127\.0\.0\.1|\[::1\]))(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?(?!\n)$")
# The columns' ranges, so the schema (and a 400) says them on every database, not only PostgreSQL.
PROVIDER_RANGES = {
    "max_concurrency": {"max_value": 32767}, "max_pages": {"max_value": 2147483647},
    "api_base_url": {"validators": [RegexValidator(CARRIER_URL_PATTERN, "Use https://host.example.com[:port][/path] "
                                                   "(http only to localhost or 127.0.0.1).")]},
}
RATE_PLAN_FIELDS = [
    "code", "name", "monthly_cost", "included_mb", "overage_rate", "overage_block_mb", "fee_per_sim", "pooled",
    "plan_type", "active",
]


class ProviderOut(serializers.ModelSerializer):
    has_api_key = serializers.SerializerMethodField()

    class Meta:
        model = ServiceProvider
        # api_key is deliberately absent: it is write-only.
        fields = ["id", "tenant", *PROVIDER_FIELDS, "has_api_key", "last_device_sync_at", "last_usage_sync_at",
                  "created_at"]
        read_only_fields = fields

    def get_has_api_key(self, obj) -> bool:
        return obj.has_api_key


class SyncableIntegrationField(serializers.ChoiceField):
    """The integrations an account may be given: the schema's enum lists only those carrieropt can sync
    (stored accounts of the others stay readable, so the output enum has them all)."""

    def __init__(self, **kwargs):
        super().__init__(choices=SYNCABLE_INTEGRATION_CHOICES, **kwargs)

    def to_internal_value(self, data):
        try:
            validate_syncable_integration(data)  # a known one that cannot be synced: say why, not just "not a choice"
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages)
        return super().to_internal_value(data)


class ProviderCreateIn(StrictInput, serializers.ModelSerializer):
    integration = SyncableIntegrationField(required=False)
    api_key = serializers.CharField(write_only=True, max_length=300, trim_whitespace=True)

    class Meta:
        model = ServiceProvider
        fields = ["tenant", *PROVIDER_FIELDS, "api_key"]
        extra_kwargs = PROVIDER_RANGES
        # Uniqueness and the other constraints are checked by the service (full_clean),
        # which reports them per field like every other rule.
        validators = []


class ProviderUpdateIn(StrictInput, serializers.ModelSerializer):
    integration = SyncableIntegrationField(required=False)
    api_key = serializers.CharField(write_only=True, max_length=300, required=False, allow_blank=True,
                                    help_text="Blank or absent keeps the stored key.")

    class Meta:
        model = ServiceProvider
        fields = [*PROVIDER_FIELDS, "api_key"]
        extra_kwargs = {name: {"required": False, **PROVIDER_RANGES.get(name, {})} for name in PROVIDER_FIELDS}
        validators = []


class RatePlanOut(serializers.ModelSerializer):
    catalogue_problems = serializers.ListField(child=serializers.CharField(), read_only=True,
                                               help_text="Why the optimizer would reject this plan (empty when usable).")

    class Meta:
        model = RatePlan
        fields = ["id", "provider", *RATE_PLAN_FIELDS, "catalogue_problems"]
        read_only_fields = fields


class RatePlanCreateIn(StrictInput, serializers.ModelSerializer):
    class Meta:
        model = RatePlan
        fields = ["provider", *RATE_PLAN_FIELDS]
        validators = []


class RatePlanUpdateIn(StrictInput, serializers.ModelSerializer):
    class Meta:
        model = RatePlan
        fields = RATE_PLAN_FIELDS
        extra_kwargs = {name: {"required": False} for name in RATE_PLAN_FIELDS}
        validators = []


class CommunicationPlanOut(serializers.ModelSerializer):
    class Meta:
        model = CommunicationPlan
        fields = ["id", "provider", "name", "rate_plans", "created_at"]
        read_only_fields = fields


class CommunicationPlanCreateIn(StrictInput, serializers.ModelSerializer):
    class Meta:
        model = CommunicationPlan
        fields = ["provider", "name", "rate_plans"]
        extra_kwargs = {"rate_plans": {"required": False}}
        validators = []


class CommunicationPlanUpdateIn(StrictInput, serializers.ModelSerializer):
    class Meta:
        model = CommunicationPlan
        fields = ["name", "rate_plans"]
        extra_kwargs = {"name": {"required": False}, "rate_plans": {"required": False}}
        validators = []
