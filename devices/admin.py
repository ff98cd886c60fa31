from django import forms
from django.contrib import admin

from carrieropt.errors import ApplicationError
from devices import pins
from devices.models import CarrierCallCount, Customer, Device, DevicePin, DeviceStaging, DeviceUsage, SyncRun


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    """The tenants' customers, named by the carrier on each SIM; map each to its AMOP CustomerId and SiteId here."""

    list_display = ["name", "tenant", "amop_customer_id", "amop_site_id", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "=amop_customer_id", "=amop_site_id"]
    readonly_fields = ["created_at"]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["iccid", "provider", "customer", "status", "rate_plan", "communication_plan", "date_activated",
                    "date_updated", "missing_since"]
    list_filter = ["status", "provider", "rate_plan", "communication_plan"]
    search_fields = ["=iccid", "iccid__startswith", "msisdn"]
    list_select_related = ["provider", "rate_plan", "communication_plan", "customer"]
    raw_id_fields = ["rate_plan", "communication_plan", "customer"]
    show_full_result_count = False


class DevicePinForm(forms.ModelForm):
    class Meta:
        model = DevicePin
        fields = ["device", "reason"]

    def clean(self):
        cleaned = super().clean()
        device = cleaned.get("device")
        if device is not None and not self.instance.pk:
            try:
                pins.pin_check(device=device, reason=cleaned.get("reason", ""))
            except ApplicationError as exc:
                self.add_error(exc.field if exc.field == "reason" else "device", exc.message)
        return cleaned


@admin.register(DevicePin)
class DevicePinAdmin(admin.ModelAdmin):
    """SIMs an operator keeps on their plan, with why and who decided; a session never moves them."""

    form = DevicePinForm

    list_display = ["device", "device__provider", "device__rate_plan", "reason", "pinned_by", "pinned_at"]
    list_filter = ["device__provider"]
    search_fields = ["device__iccid__startswith", "reason"]
    raw_id_fields = ["device"]
    readonly_fields = ["pinned_by", "pinned_at"]
    list_select_related = ["device__provider", "device__rate_plan", "pinned_by"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("device__provider", "device__rate_plan", "pinned_by")

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["reason"])
            return
        # Through the service: the same checks (a current plan to keep, not pinned twice) as the API.
        pin = pins.device_pin(device=obj.device, reason=obj.reason, user=request.user)
        obj.pk, obj.pinned_by, obj.pinned_at = pin.pk, pin.pinned_by, pin.pinned_at

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "device"] if obj else self.readonly_fields


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
    list_display = ["id", "provider", "kind", "status", "background", "started_at", "heartbeat_at", "resumed_from",
                    "pages", "devices_seen", "inserted", "updated", "missing", "rejected", "duplicates", "skipped",
                    "retries", "calls", "merge_seconds", "duration_seconds"]
    list_filter = ["status", "kind", "background", "provider"]
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
