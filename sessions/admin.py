from django.contrib import admin

from sessions.models import OptimizationSession, ProgressEvent


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
