from django.contrib import admin
from django.utils import timezone

from carrieropt.models import ClusterStatus, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "cross_provider", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["users"]


@admin.register(ClusterStatus)
class ClusterStatusAdmin(admin.ModelAdmin):
    """Which django-q2 clusters reported lately (written by the clusters themselves; read-only here)."""

    list_display = ["key", "expires_at", "alive"]
    readonly_fields = ["key", "value", "expires_at"]

    @admin.display(boolean=True)
    def alive(self, obj):
        return obj.expires_at > timezone.now()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
