"""Admin of the rate-plan push, and the "Apply recommended rate plans" action on sessions."""
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from carrieropt.actors import user_actor
from carrieropt.errors import ApplicationError
from pushes.counts import push_rate_live
from pushes.models import RatePlanChange, RatePlanPush, RatePlanPushBatch
from pushes.permissions import APPLY_REFUSED, can_apply
from pushes.recommendations import session_apply
from sessions.admin import OptimizationSessionAdmin
from sessions.models import OptimizationSession


class RatePlanPushBatchInline(admin.TabularInline):
    model = RatePlanPushBatch
    extra = 0
    can_delete = False
    readonly_fields = ["number", "status", "attempts", "claimed_by", "lease_expires_at", "started_at", "finished_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RatePlanPush)
class RatePlanPushAdmin(admin.ModelAdmin):
    list_display = ["id", "provider", "session", "trigger", "applied_by", "status", "decision", "total", "applied", "rejected",
                    "discrepancies", "failed", "not_sent", "remaining", "verify_mismatches", "rate", "created_at", "finished_at"]
    list_filter = ["status", "decision", "trigger", "provider"]
    search_fields = ["decision_reason", "error", "applied_by"]
    list_select_related = ["provider", "session"]
    # Written only by the push services: the record of what was sent must not be edited by hand.
    readonly_fields = [f.name for f in RatePlanPush._meta.fields] + ["remaining", "rate", "changes_link"]
    inlines = [RatePlanPushBatchInline]

    # The stored counts are refreshed every few seconds while a push runs; no query per row.
    @admin.display(description="remaining")
    def remaining(self, obj):
        return (obj.total - obj.applied - obj.rejected - obj.discrepancies - obj.failed - obj.not_sent
                if obj.is_active else 0)

    @admin.display(description="SIMs/min")
    def rate(self, obj):
        rate = push_rate_live(push=obj, processed=obj.applied + obj.rejected + obj.discrepancies + obj.failed)
        return "" if rate is None else f"{rate:,.1f}"

    @admin.display(description="changes")
    def changes_link(self, obj):
        url = reverse("admin:pushes_rateplanchange_changelist") + f"?push__id__exact={obj.pk}"
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


@admin.action(description="Apply recommended rate plans (push to the carrier)")
def apply_recommendations(modeladmin, request, queryset):
    if not can_apply(request.user):
        modeladmin.message_user(request, APPLY_REFUSED, messages.ERROR)
        return
    for session in queryset.select_related("provider"):
        try:
            push = session_apply(session=session, trigger="admin", applied_by=user_actor(request.user))
        except ApplicationError as exc:
            modeladmin.message_user(request, f"Session {session.pk}: not applied. {exc.message}", messages.WARNING)
            continue
        level = messages.SUCCESS if push.decision == "go" else messages.WARNING
        modeladmin.message_user(request, f"Session {session.pk}: rate plan update #{push.pk} ({push.total} changes). "
                                         f"{push.decision_reason}", level)


# sessions registers its admin without knowing the push (it sits below); this app loads after it and adds the action.
admin.site.unregister(OptimizationSession)


@admin.register(OptimizationSession)
class OptimizationSessionPushAdmin(OptimizationSessionAdmin):
    actions = [*(OptimizationSessionAdmin.actions or []), apply_recommendations]
