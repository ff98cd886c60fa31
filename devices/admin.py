from django.contrib import admin

from devices.models import CarrierCallCount, Device, DeviceStaging, DeviceUsage, SyncRun


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


@admin.register(CarrierCallCount)
class CarrierCallCountAdmin(admin.ModelAdmin):
    """Calls to each carrier account by endpoint and outcome (what /metrics shows), kept by the clients."""

    list_display = ["provider", "endpoint", "outcome", "calls", "updated_at"]
    list_filter = ["outcome", "endpoint", "provider"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
