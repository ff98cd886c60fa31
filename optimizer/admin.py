from django.contrib import admin

from optimizer.models import (
    CommGroup,
    DeviceAssignment,
    OptimizationQueue,
    OptimizationResult,
    OptimizationRun,
    RunRealized,
)


@admin.register(OptimizationRun)
class OptimizationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "provider", "billing_period", "method", "status", "created_at", "finished_at"]
    list_filter = ["status", "method", "provider"]
    raw_id_fields = ["provider", "billing_period"]
    readonly_fields = ["created_at", "started_at", "finished_at"]


@admin.register(CommGroup)
class CommGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "run", "status", "device_count", "current_cost", "optimized_cost", "lower_bound", "winning_method"]
    list_filter = ["status", "winning_method"]
    search_fields = ["name"]
    raw_id_fields = ["run"]
    filter_horizontal = ["communication_plans", "rate_plans"]


@admin.register(OptimizationQueue)
class OptimizationQueueAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "comm_group", "method", "status", "attempts", "lease_expires_at", "finished_at"]
    list_filter = ["status", "method"]
    raw_id_fields = ["run", "comm_group"]


@admin.register(OptimizationResult)
class OptimizationResultAdmin(admin.ModelAdmin):
    list_display = ["id", "comm_group", "method", "cost", "lower_bound", "strategy", "created_at"]
    list_filter = ["method"]
    raw_id_fields = ["queue", "comm_group"]
    exclude = ["assignment"]


@admin.register(DeviceAssignment)
class DeviceAssignmentAdmin(admin.ModelAdmin):
    list_display = ["iccid", "run", "comm_group", "usage_mb", "current_plan", "recommended_plan", "current_cost", "recommended_cost", "changed"]
    list_filter = ["changed", "comm_group__status"]
    search_fields = ["=iccid", "iccid__startswith"]
    raw_id_fields = ["run", "comm_group", "device", "current_plan", "recommended_plan"]
    list_select_related = ["current_plan", "recommended_plan", "comm_group"]
    show_full_result_count = False


@admin.register(RunRealized)
class RunRealizedAdmin(admin.ModelAdmin):
    """Computed from the final usage (optimizer.realized); read here, never edited."""

    list_display = ["run", "final_synced_at", "priced", "missing", "cost_before", "cost_after", "projected_savings",
                    "changes_followed", "recommended_changes"]
    raw_id_fields = ["run"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
