from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from devices.models import Device, DeviceStaging, DeviceUsage, RatePlanChange, RatePlanPush, RatePlanPushBatch, SyncRun
from devices.push import push_rate_live


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["iccid", "provider", "status", "rate_plan", "communication_plan", "date_activated", "date_updated", "missing_since"]
    list_filter = ["status", "provider", "rate_plan", "communication_plan"]
    search_fields = ["=iccid", "iccid__startswith", "msisdn"]
    list_select_related = ["provider", "rate_plan", "communication_plan"]
    raw_id_fields = ["rate_plan", "communication_plan"]
    show_full_result_count = False


@admin.register(DeviceUsage)
class DeviceUsageAdmin(admin.ModelAdmin):
    list_display = ["device", "billing_period", "usage_mb", "projected_mb", "usage_date"]
    list_filter = ["billing_period__provider", "billing_period"]
    search_fields = ["device__iccid__startswith"]
    raw_id_fields = ["device", "billing_period"]
    list_select_related = ["device", "billing_period"]
    show_full_result_count = False


@admin.register(DeviceStaging)
class DeviceStagingAdmin(admin.ModelAdmin):
    list_display = ["iccid", "provider", "status", "rate_plan_code", "communication_plan_name", "page", "reject_reason", "sync_run"]
    list_filter = ["provider", "status"]
    search_fields = ["iccid__startswith"]
    raw_id_fields = ["sync_run"]
    show_full_result_count = False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["id", "provider", "kind", "status", "started_at", "pages", "devices_seen", "inserted", "updated",
                    "missing", "rejected", "duplicates", "skipped", "retries", "calls", "merge_seconds", "duration_seconds"]
    list_filter = ["status", "kind", "provider"]
    search_fields = ["error"]
    readonly_fields = [f.name for f in SyncRun._meta.fields]


class RatePlanPushBatchInline(admin.TabularInline):
    model = RatePlanPushBatch
    extra = 0
    can_delete = False
    readonly_fields = ["number", "status", "attempts", "claimed_by", "lease_expires_at", "started_at", "finished_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RatePlanPush)
class RatePlanPushAdmin(admin.ModelAdmin):
    list_display = ["id", "provider", "session", "trigger", "status", "decision", "total", "applied", "rejected",
                    "discrepancies", "failed", "remaining", "verify_mismatches", "rate", "created_at", "finished_at"]
    list_filter = ["status", "decision", "trigger", "provider"]
    search_fields = ["decision_reason", "error"]
    list_select_related = ["provider", "session"]
    # Written only by the push services: the record of what was sent must not be edited by hand.
    readonly_fields = [f.name for f in RatePlanPush._meta.fields] + ["remaining", "rate", "changes_link"]
    inlines = [RatePlanPushBatchInline]

    # The stored counts are refreshed every few seconds while a push runs; no query per row.
    @admin.display(description="remaining")
    def remaining(self, obj):
        return obj.total - obj.applied - obj.rejected - obj.discrepancies - obj.failed if obj.is_active else 0

    @admin.display(description="SIMs/min")
    def rate(self, obj):
        rate = push_rate_live(push=obj, processed=obj.applied + obj.rejected + obj.discrepancies + obj.failed)
        return "" if rate is None else f"{rate:,.1f}"

    @admin.display(description="changes")
    def changes_link(self, obj):
        url = reverse("admin:devices_rateplanchange_changelist") + f"?push__id__exact={obj.pk}"
        return format_html('<a href="{}">{} changes</a>', url, obj.total)

    def has_add_permission(self, request):
        return False


@admin.register(RatePlanPushBatch)
class RatePlanPushBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "push", "number", "status", "attempts", "claimed_by", "lease_expires_at", "finished_at"]
    list_filter = ["status"]
    raw_id_fields = ["push"]
    readonly_fields = [f.name for f in RatePlanPushBatch._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(RatePlanChange)
class RatePlanChangeAdmin(admin.ModelAdmin):
    list_display = ["iccid", "push", "batch", "from_plan_code", "to_plan_code", "status", "carrier_plan", "sends",
                    "attempts", "verified", "verified_plan", "finished_at"]
    list_filter = ["status", "verified", "push"]
    search_fields = ["=iccid", "iccid__startswith", "error"]
    list_select_related = ["push"]
    readonly_fields = [f.name for f in RatePlanChange._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False
