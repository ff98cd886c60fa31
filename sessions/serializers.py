"""API shapes of optimization sessions and their progress events."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from carrieropt.api.base import MAX_ID, StrictInput
from optimizer.serializers import MONEY, RATIO, RealizedOut, money_out, ratio_out
from rateplans.models import BillingPeriod, ServiceProvider
from sessions.models import ChargeType, Method, OptimizationSession, ProgressEvent, Scope, SessionStatus
from sessions.realized import session_realized

_money = serializers.DecimalField(**MONEY, allow_null=True)
_ratio = serializers.DecimalField(**RATIO, allow_null=True)


class BillingPeriodRef(serializers.Serializer):
    id = serializers.IntegerField()
    start_date = serializers.DateField()
    end_date = serializers.DateField()


class StageTiming(serializers.Serializer):
    started = serializers.CharField(required=False, help_text="ISO 8601 with zone.")
    finished = serializers.CharField(required=False, help_text="ISO 8601 with zone.")
    seconds = serializers.FloatField(required=False)


class FrontierPointOut(serializers.Serializer):
    max_changes = serializers.IntegerField(help_text="The change budget: at most this many SIMs change plan.")
    changes = serializers.IntegerField(help_text="SIMs this budget's answer moves.")
    total_cost = serializers.DecimalField(**MONEY, help_text="Cost of this budget's answer (priced by the cost model).")
    lower_bound = serializers.DecimalField(**MONEY, help_text="Proven lower bound on any answer within this budget.")
    gap = serializers.DecimalField(**RATIO, allow_null=True, help_text="(total_cost - lower_bound) / lower_bound.")
    savings = serializers.DecimalField(**MONEY, allow_null=True, help_text="Current cost minus total_cost.")
    savings_share = serializers.DecimalField(**RATIO, allow_null=True,
                                             help_text="Share of the unconstrained answer's savings, 0–1.")
    changes_share = serializers.DecimalField(**RATIO, allow_null=True,
                                             help_text="max_changes as a share of the unconstrained answer's changes.")
    chosen = serializers.BooleanField(help_text="The session's change budget (what applying pushes).")


def frontier_out(session) -> list[dict]:
    from sessions.frontier import frontier_rows

    return [{"max_changes": r.max_changes, "changes": r.changes, "total_cost": money_out(r.total_cost),
             "lower_bound": money_out(r.lower_bound), "gap": ratio_out(r.gap), "savings": money_out(r.savings),
             "savings_share": ratio_out(r.savings_share), "changes_share": ratio_out(r.changes_share),
             "chosen": r.chosen} for r in frontier_rows(session)]


class SessionAccountOut(serializers.Serializer):
    id = serializers.UUIDField()
    provider = serializers.IntegerField()
    provider_name = serializers.CharField()
    status = serializers.ChoiceField(choices=SessionStatus.choices)
    percentage = serializers.IntegerField()


class SessionOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="guid", help_text="The session GUID (OptimizationSessionGuid).")
    session_id = serializers.IntegerField(source="pk", help_text="The integer SessionId AMOP events carry.")
    provider_name = serializers.CharField(source="provider.name")
    billing_period = BillingPeriodRef()
    percentage = serializers.IntegerField(source="progress", help_text="0–100.")
    stage_timings = serializers.DictField(child=StageTiming(), help_text="Per stage: started, finished, seconds.")
    current_cost = serializers.DecimalField(**MONEY, allow_null=True)
    baseline_cost = serializers.DecimalField(**MONEY, allow_null=True)
    optimized_cost = serializers.DecimalField(**MONEY, allow_null=True)
    lower_bound = serializers.DecimalField(**MONEY, allow_null=True)
    savings = serializers.SerializerMethodField()
    savings_percent = serializers.SerializerMethodField()
    gap = serializers.SerializerMethodField(help_text="Optimized cost above the lower bound, as a fraction of it.")
    report_url = serializers.SerializerMethodField()
    frontier = serializers.SerializerMethodField(
        help_text="Savings versus changes: cost and proven bound at about FRONTIER_POINTS change budgets from 0 to "
                  "the unconstrained answer's changes (empty until the session completes).")
    no_usage_iccids = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text="Billable SIMs without usage of the cycle: kept on their plan, not changes, priced at the fixed charge only.")
    realized = serializers.SerializerMethodField(
        help_text="Once the cycle has ended and its final usage was read: what the recommendation actually saved "
                  "(null before).")

    parent = serializers.UUIDField(source="parent.guid", allow_null=True, default=None,
                                   help_text="The cross-provider session this account's session is part of.")
    accounts = serializers.SerializerMethodField(
        help_text="Cross-provider: each account's session (id, provider, status, percentage); null otherwise.")
    comparison = serializers.JSONField(
        help_text="Cross-provider, once every account's session completed: per account SIMs, current_cost, "
                  "optimized_cost, savings, changes and fleet_cost (the customer's whole fleet on that account's "
                  "catalogue), and the totals; {} before and otherwise.")

    class Meta:
        model = OptimizationSession
        fields = ["id", "session_id", "tenant", "provider", "provider_name", "scope", "customer", "parent",
                  "accounts", "comparison", "billing_period", "status", "stage",
                  "percentage", "trigger", "started_by", "cancelled_by", "method", "charge_type", "must_beat_current", "sync_devices", "is_active", "created_at", "started_at",
                  "finished_at", "deadline", "stage_timings", "device_count", "current_cost", "baseline_cost",
                  "optimized_cost", "savings", "savings_percent", "lower_bound", "gap", "error", "report_url",
                  "sims_with_usage", "no_usage_count", "no_usage_iccids", "warnings", "realized", "max_changes", "frontier"]
        read_only_fields = fields

    @extend_schema_field(SessionAccountOut(many=True, allow_null=True))
    def get_accounts(self, obj):
        if obj.scope != Scope.CROSS_PROVIDER:
            return None
        from sessions.crossprovider import session_accounts

        return [{"id": m.guid, "provider": m.provider_id, "provider_name": m.provider.name, "status": m.status,
                 "percentage": m.progress} for m in session_accounts(obj)]

    @extend_schema_field(RealizedOut(allow_null=True))
    def get_realized(self, obj):
        realized = session_realized(obj)
        return None if realized is None else RealizedOut(realized, context=self.context).data

    @extend_schema_field(_money)
    def get_savings(self, obj):
        return money_out(obj.figures.savings)

    @extend_schema_field(_ratio)
    def get_savings_percent(self, obj):
        ratio = obj.figures.savings_ratio
        return None if ratio is None else ratio_out(ratio * 100)

    @extend_schema_field(_ratio)
    def get_gap(self, obj):
        return ratio_out(obj.figures.gap)

    @extend_schema_field(FrontierPointOut(many=True))
    def get_frontier(self, obj):
        return frontier_out(obj)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_report_url(self, obj):
        if not obj.report_path:
            return None
        request = self.context.get("request")
        path = f"/api/sessions/{obj.guid}/report/"
        return request.build_absolute_uri(path) if request else path


def _only(value: str) -> dict:
    return {"type": "string", "pattern": f"^{value}$"}


class SessionStartIn(StrictInput, serializers.Serializer):
    # One way to name the period at most (the service refuses both with a 400); the schema says so (ApiSchema).
    exclusive_fields = (("billing_period", "billing_period_end"),)
    # What each scope needs (sessions.services._scope_for_start refuses the rest with a 400 naming the field):
    # carrier (also when scope is absent) an account and no customer; customer both; cross_provider a customer and
    # neither an account nor one account's billing period.
    # (A pattern names one scope: drf-spectacular would turn an inline enum into a shared component.)
    schema_rules = ({"anyOf": [
        {"anyOf": [{"not": {"required": ["scope"]}}, {"properties": {"scope": _only(Scope.CARRIER)}}],
         "required": ["provider"], "not": {"required": ["customer"]}},
        {"properties": {"scope": _only(Scope.CUSTOMER)}, "required": ["scope", "provider", "customer"]},
        {"properties": {"scope": _only(Scope.CROSS_PROVIDER)}, "required": ["scope", "customer"],
         "not": {"anyOf": [{"required": ["provider"]}, {"required": ["billing_period"]}]}},
    ]},)
    # The view narrows the queryset to the caller's carrier accounts.
    provider = serializers.PrimaryKeyRelatedField(
        queryset=ServiceProvider.objects.none(), required=False,
        help_text="Carrier account id; required unless scope is cross_provider (which covers every account the "
                  "customer has SIMs on, and takes none).")
    scope = serializers.ChoiceField(
        choices=Scope.choices, default=Scope.CARRIER,
        help_text="carrier: every SIM of the account; customer: the customer's SIMs on the account; cross_provider: "
                  "the customer's SIMs on each of the tenant's accounts, compared side by side (409 when switched "
                  "off for the tenant).")
    customer = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID,
        help_text="Customer id (GET /api/customers/); required for scope customer and cross_provider, not allowed "
                  "with carrier. Another tenant's or an unknown id is a 404 naming customer.")
    # Absent options are the carrier account's defaults (default_method, default_charge_type, default_must_beat_current).
    method = serializers.ChoiceField(choices=Method.choices, required=False,
                                     help_text="Absent: the account's default_method.")
    charge_type = serializers.ChoiceField(choices=ChargeType.choices, required=False,
                                          help_text="What the costs count: both (rate charge and overage), rate or "
                                                    "overage. Absent: the account's default_charge_type.")
    must_beat_current = serializers.BooleanField(
        required=False, help_text="Keep a group on its current plans unless the answer is strictly cheaper (legacy "
                                  "SkipLowerCostCheck off). Absent: the account's default_must_beat_current.")
    sync_devices = serializers.BooleanField(default=True, help_text="Sync devices and usage from the carrier first.")
    max_changes = serializers.IntegerField(
        required=False, min_value=0,
        help_text="Change budget: applying pushes the answer in which at most this many SIMs change plan (it is one "
                  "of the frontier's points). Absent: the account's default_max_changes.")
    session_guid = serializers.UUIDField(
        required=False, help_text="The caller's own id for the session (AMOP's OptimizationSessionGuid), used as its "
                                  "`id`. Starting again with the same GUID answers that session (200) instead of "
                                  "making another; with another account or other options it is a 409.")
    # The view narrows the queryset to the caller's billing periods; the service checks it is the account's.
    billing_period = serializers.PrimaryKeyRelatedField(
        queryset=BillingPeriod.objects.none(), required=False,
        help_text="Id of the account's billing period to optimize (AMOP's BillPeriodId). Absent: the current one.")
    billing_period_end = serializers.DateField(
        required=False, help_text="Or the last day of the billing cycle to optimize (YYYY-MM-DD).")


class SessionBudgetIn(StrictInput, serializers.Serializer):
    max_changes = serializers.IntegerField(
        allow_null=True, min_value=0,
        help_text="A point of the session's frontier (its max_changes): applying then pushes only that budget's "
                  "changes. null: every recommended change.")


class SessionFilter(serializers.Serializer):
    provider = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    status = serializers.ChoiceField(choices=SessionStatus.choices, required=False)
    customer = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID,
                                        help_text="Customer id: sessions of the carrier accounts this customer has "
                                                  "SIMs on.")


class ProgressEventOut(serializers.ModelSerializer):
    class Meta:
        model = ProgressEvent
        fields = ["event_id", "sequence", "kind", "progress", "error_message", "device_count", "payload",
                  "created_at", "delivered_at"]
        read_only_fields = fields
