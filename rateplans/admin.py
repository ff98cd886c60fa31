from django import forms
from django.contrib import admin

from rateplans.models import (
    CREDENTIAL_TARGET_FIELDS,
    Alert,
    BillingPeriod,
    CommunicationPlan,
    RatePlan,
    ServiceProvider,
)


class ServiceProviderForm(forms.ModelForm):
    # The key is write-only: the field renders empty and a blank submit keeps the stored key.
    api_key = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current key. It is never shown.",
    )

    class Meta:
        model = ServiceProvider
        fields = [
            "tenant", "name", "integration", "portal_type", "api_base_url", "username", "api_key",
            "billing_timezone", "currency", "billing_cycle_end_day", "optimization_start_hour", "auto_apply", "prorates", "pooling", "active",
            "report_recipients", "rate_limit_per_second", "max_concurrency", "max_pages",
            "default_method", "default_charge_type", "default_must_beat_current", "default_max_changes",
        ]

    def clean_api_key(self):
        value = self.cleaned_data.get("api_key")
        if value:
            return value
        if not self.instance.pk:
            raise forms.ValidationError("An API key is required for a new carrier account.")
        moved = sorted(f for f in CREDENTIAL_TARGET_FIELDS if f in self.changed_data)
        if moved:
            raise forms.ValidationError(
                f"Changing {', '.join(moved)} needs the API key again: the stored key is only sent where it was entered for.")
        return ServiceProvider.objects.values_list("api_key", flat=True).get(pk=self.instance.pk)


@admin.register(ServiceProvider)
class ServiceProviderAdmin(admin.ModelAdmin):
    form = ServiceProviderForm
    list_display = ["name", "tenant", "integration", "portal_type", "billing_timezone", "billing_cycle_end_day",
                    "optimization_start_hour", "auto_apply", "active", "last_device_sync_at"]
    list_filter = ["integration", "portal_type", "pooling", "auto_apply", "active", "tenant"]
    search_fields = ["name", "username", "tenant__name"]
    readonly_fields = ["last_device_sync_at", "last_usage_sync_at", "created_at"]


@admin.register(BillingPeriod)
class BillingPeriodAdmin(admin.ModelAdmin):
    list_display = ["provider", "start_date", "end_date"]
    list_filter = ["provider__tenant", "provider"]
    date_hierarchy = "end_date"


@admin.register(RatePlan)
class RatePlanAdmin(admin.ModelAdmin):
    list_display = ["code", "provider", "monthly_cost", "included_mb", "overage_rate", "overage_block_mb",
                    "fee_per_sim", "pooled", "plan_type", "active"]
    list_filter = ["pooled", "plan_type", "active", "provider"]
    search_fields = ["code", "name"]


@admin.register(CommunicationPlan)
class CommunicationPlanAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "created_at"]
    list_filter = ["provider"]
    search_fields = ["name"]
    filter_horizontal = ["rate_plans"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["first_at", "kind", "provider", "subject", "occurrences", "last_at", "sent_at", "send_error"]
    list_filter = ["kind", "provider"]
    search_fields = ["subject", "body", "key"]
    readonly_fields = ["provider", "kind", "key", "subject", "body", "recipients", "occurrences", "first_at", "last_at",
                       "sent_at", "send_error"]

    def has_add_permission(self, request):
        return False
