from django.contrib import admin, messages

from rateplans.admin import ServiceProviderAdmin
from rateplans.models import ServiceProvider
from sessions.models import OptimizationSession, ProgressEvent, Trigger
from sessions.services import SessionAlreadyRunning, session_start


@admin.action(description="Start optimization session")
def start_optimization_session(modeladmin, request, queryset):
    for provider in queryset:
        try:
            session = session_start(provider=provider, trigger=Trigger.ADMIN)
        except SessionAlreadyRunning as exc:
            modeladmin.message_user(request, f"{provider.name}: not started. {exc.message}", messages.WARNING)
        else:
            modeladmin.message_user(request, f"{provider.name}: started optimization session {session.guid}.",
                                    messages.SUCCESS)


# rateplans sits below sessions and does not know it: sessions adds its action to the carrier account admin.
admin.site.unregister(ServiceProvider)


@admin.register(ServiceProvider)
class SessionsServiceProviderAdmin(ServiceProviderAdmin):
    actions = [*ServiceProviderAdmin.actions, start_optimization_session]


@admin.register(OptimizationSession)
class OptimizationSessionAdmin(admin.ModelAdmin):
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
