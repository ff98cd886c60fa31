"""API shapes of a run's answer: communication groups and per-SIM assignments."""
from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from optimizer.engine.figures import CostFigures
from optimizer.models import CommGroup, DeviceAssignment, RunRealized

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
    customer = serializers.IntegerField(source="customer_id", allow_null=True,
                                        help_text="The SIM's customer (id) when the session computed its answer.")
    customer_name = serializers.CharField(source="customer.name", allow_null=True, default=None)
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


class RealizedGroupOut(serializers.Serializer):
    name = serializers.CharField()
    sims = serializers.IntegerField()
    priced = serializers.IntegerField()
    missing = serializers.IntegerField()
    cost_before = serializers.DecimalField(**MONEY)
    cost_after = serializers.DecimalField(**MONEY)
    savings = serializers.DecimalField(**MONEY)
    projected_savings = serializers.DecimalField(**MONEY)
    compared = serializers.IntegerField()
    projected_mb = serializers.DecimalField(max_digits=18, decimal_places=3)
    final_mb = serializers.DecimalField(max_digits=18, decimal_places=3)
    abs_error_mb = serializers.DecimalField(max_digits=18, decimal_places=3)
    projection_error = serializers.FloatField(allow_null=True, help_text="(projected - final) / final.")


class MissingSimOut(serializers.Serializer):
    iccid = serializers.CharField()
    group = serializers.CharField()
    reason = serializers.CharField()


class RealizedOut(serializers.ModelSerializer):
    """What the recommendation actually saved once the cycle ended: the cycle priced with the final usage on the
    plans at the cycle's end (cost_after) and on the plans at the time of the run (cost_before)."""

    cost_before = serializers.DecimalField(**MONEY)
    cost_after = serializers.DecimalField(**MONEY)
    savings = serializers.SerializerMethodField(help_text="cost_before - cost_after.")
    savings_percent = serializers.SerializerMethodField()
    projected_savings = serializers.DecimalField(**MONEY, allow_null=True)
    projected_mb = serializers.DecimalField(max_digits=18, decimal_places=3)
    final_mb = serializers.DecimalField(max_digits=18, decimal_places=3)
    abs_error_mb = serializers.DecimalField(max_digits=18, decimal_places=3)
    projection_error = serializers.SerializerMethodField(help_text="(projected - final) / final over `compared` SIMs.")
    missing_sims = MissingSimOut(many=True, help_text="SIMs not priced (no final usage, or no known plan); the first 1,000.")
    groups = RealizedGroupOut(many=True)

    class Meta:
        model = RunRealized
        fields = ["final_synced_at", "computed_at", "sims", "priced", "missing", "missing_sims", "cost_before",
                  "cost_after", "savings", "savings_percent", "projected_savings", "compared", "projected_mb",
                  "final_mb", "abs_error_mb", "projection_error", "recommended_changes", "changes_made",
                  "changes_followed", "groups"]
        read_only_fields = fields

    @extend_schema_field(_money)
    def get_savings(self, obj):
        return money_out(obj.figures.savings)

    @extend_schema_field(_ratio)
    def get_savings_percent(self, obj):
        ratio = obj.figures.savings_ratio
        return None if ratio is None else ratio_out(ratio * 100)

    @extend_schema_field(_ratio)
    def get_projection_error(self, obj):
        return ratio_out(obj.projection_error)
