"""API shapes of a run's answer: communication groups and per-SIM assignments."""
from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from optimizer.engine.figures import CostFigures
from optimizer.models import CommGroup, DeviceAssignment

MONEY = {"max_digits": 16, "decimal_places": 4}
RATIO = {"max_digits": 12, "decimal_places": 6}
_money = serializers.DecimalField(**MONEY, allow_null=True)
_ratio = serializers.DecimalField(**RATIO, allow_null=True)


def money_out(value: Decimal | None) -> str | None:
    return None if value is None else _money.to_representation(value)


def ratio_out(value: Decimal | None) -> str | None:
    return None if value is None else _ratio.to_representation(value)


class NamedRef(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class CommGroupOut(serializers.ModelSerializer):
    communication_plans = serializers.SerializerMethodField()
    rate_plans = serializers.SerializerMethodField()
    current_cost = serializers.DecimalField(**MONEY, allow_null=True)
    baseline_cost = serializers.DecimalField(**MONEY, allow_null=True)
    optimized_cost = serializers.DecimalField(**MONEY, allow_null=True)
    lower_bound = serializers.DecimalField(**MONEY, allow_null=True)
    savings = serializers.SerializerMethodField()
    gap = serializers.SerializerMethodField(help_text="Optimized cost above the lower bound, as a fraction of it.")

    class Meta:
        model = CommGroup
        fields = ["id", "name", "status", "device_count", "communication_plans", "rate_plans", "current_cost",
                  "baseline_cost", "optimized_cost", "savings", "lower_bound", "gap", "winning_method",
                  "winning_strategy", "note"]
        read_only_fields = fields

    @extend_schema_field(NamedRef(many=True))
    def get_communication_plans(self, obj):
        return [{"id": c.pk, "name": c.name} for c in obj.communication_plans.all()]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_rate_plans(self, obj):
        return [p.code for p in obj.rate_plans.all()]

    @extend_schema_field(_money)
    def get_savings(self, obj):
        return money_out(obj.figures.savings)

    @extend_schema_field(_ratio)
    def get_gap(self, obj):
        return ratio_out(obj.figures.gap)


class AssignmentOut(serializers.ModelSerializer):
    group = serializers.IntegerField(source="comm_group_id")
    group_name = serializers.CharField(source="comm_group.name")
    current_plan = serializers.CharField(source="current_plan.code", allow_null=True, default=None)
    recommended_plan = serializers.CharField(source="recommended_plan.code")
    current_cost = serializers.DecimalField(**MONEY, allow_null=True)
    recommended_cost = serializers.DecimalField(**MONEY)
    savings = serializers.SerializerMethodField()
    customer = serializers.IntegerField(source="device.customer_id", allow_null=True,
                                        help_text="The SIM's customer (id), as of the last device sync.")
    customer_name = serializers.CharField(source="device.customer.name", allow_null=True, default=None)
    kept_reason = serializers.CharField(
        help_text="Why the SIM kept its plan: no_usage (no usage data, cost is the fixed charge only), pinned, "
                  "stopped (deactivated this cycle); empty when it was free to move.")

    class Meta:
        model = DeviceAssignment
        fields = ["iccid", "device", "customer", "customer_name", "group", "group_name", "usage_mb", "current_plan", "recommended_plan",
                  "current_cost", "recommended_cost", "savings", "changed", "kept_reason"]
        read_only_fields = fields

    @extend_schema_field(_money)
    def get_savings(self, obj):
        return money_out(CostFigures(obj.current_cost, obj.recommended_cost).savings)
