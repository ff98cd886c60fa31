from django.contrib import admin, messages

from carrieropt.errors import ApplicationError
from sessions.apply import session_apply
from sessions.models import OptimizationSession, ProgressEvent


@admin.action(description="Apply recommended rate plans (push to the carrier)")
def apply_recommendations(modeladmin, request, queryset):
    for session in queryset.select_related("provider"):
        try:
            push = session_apply(session=session, trigger="admin")
        except ApplicationError as exc:
            modeladmin.message_user(request, f"Session {session.pk}: not applied. {exc.message}", messages.WARNING)
            continue
        level = messages.SUCCESS if push.decision == "go" else messages.WARNING
        modeladmin.message_user(request, f"Session {session.pk}: rate plan update #{push.pk} ({push.total} changes). "
                                         f"{push.decision_reason}", level)


@admin.register(OptimizationSession)
class OptimizationSessionAdmin(admin.ModelAdmin):
    actions = [apply_recommendations]
    list_display = ["id", "guid", "provider", "status", "stage", "progress", "trigger", "method", "device_count",
                    "current_cost", "optimized_cost", "lower_bound", "created_at"]
    list_filter = ["status", "stage", "trigger", "method", "provider"]
    search_fields = ["=guid", "provider__name"]
    readonly_fields = ["guid", "run", "created_at", "started_at", "finished_at", "stage_timings"]
    raw_id_fields = ["run"]


@admin.register(ProgressEvent)
class ProgressEventAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "sequence", "kind", "progress", "error_message", "attempts", "delivered_at"]
    list_filter = ["kind", "delivered_at"]
    search_fields = ["=event_id", "error_message"]
    readonly_fields = [f.name for f in ProgressEvent._meta.fields]
