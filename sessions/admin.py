from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from carrieropt.actors import user_actor
from carrieropt.errors import ValidationFailed
from carrieropt.options import ChargeType, Method
from carrieropt.tasks import enqueue_on_commit
from rateplans.admin import ServiceProviderAdmin
from rateplans.models import ServiceProvider
from sessions.models import OptimizationSession, ProgressEvent, Trigger
from sessions.services import SessionAlreadyRunning, session_start
from sessions.webhooks import events_resend

ACCOUNT_DEFAULT = [("", "Each account's default")]


class SessionOptionsForm(forms.Form):
    method = forms.ChoiceField(choices=ACCOUNT_DEFAULT + Method.choices, required=False)
    charge_type = forms.ChoiceField(choices=ACCOUNT_DEFAULT + ChargeType.choices, required=False)
    must_beat_current = forms.ChoiceField(
        choices=ACCOUNT_DEFAULT + [("yes", "Yes: keep current plans unless strictly cheaper"), ("no", "No")],
        required=False, label="Must beat current plans")
    sync_devices = forms.BooleanField(required=False, initial=True, label="Sync devices and usage from the carrier first")
    max_changes = forms.IntegerField(required=False, min_value=0, label="Change budget (at most this many SIMs change plan)",
                                     help_text="Empty: each account's default_max_changes.")

    def options(self) -> dict:
        data = self.cleaned_data
        beat = {"yes": True, "no": False}.get(data["must_beat_current"])
        return {"method": data["method"] or None, "charge_type": data["charge_type"] or None,
                "must_beat_current": beat, "sync_devices": data["sync_devices"], "max_changes": data["max_changes"]}


@admin.action(description="Start optimization session")
def start_optimization_session(modeladmin, request, queryset):
    """First a page to choose the session's options (preset to the accounts' defaults), then the start."""
    form = SessionOptionsForm(request.POST if "start" in request.POST else None)
    if not form.is_valid():
        return TemplateResponse(request, "admin/optsessions/start_session.html", {
            **modeladmin.admin_site.each_context(request), "title": "Start optimization sessions",
            "form": form, "providers": queryset, "opts": modeladmin.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        })
    for provider in queryset:
        try:
            session = session_start(provider=provider, trigger=Trigger.ADMIN, started_by=user_actor(request.user),
                                    **form.options())
        except (SessionAlreadyRunning, ValidationFailed) as exc:
            modeladmin.message_user(request, f"{provider.name}: not started. {exc.message}", messages.WARNING)
        else:
            modeladmin.message_user(
                request, f"{provider.name}: started optimization session {session.guid} ({session.get_method_display()}, "
                         f"{session.get_charge_type_display()}, must beat current plans: "
                         f"{'yes' if session.must_beat_current else 'no'}).", messages.SUCCESS)
    return None


# rateplans sits below sessions and does not know it: sessions adds its action to the carrier account admin.
admin.site.unregister(ServiceProvider)


@admin.register(ServiceProvider)
class SessionsServiceProviderAdmin(ServiceProviderAdmin):
    actions = [*ServiceProviderAdmin.actions, start_optimization_session]


@admin.register(OptimizationSession)
class OptimizationSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "guid", "provider", "scope", "customer", "parent", "status", "stage", "progress", "trigger", "method", "charge_type",
                    "must_beat_current", "max_changes", "started_by", "cancelled_by", "device_count", "current_cost", "optimized_cost", "lower_bound", "created_at"]
    list_filter = ["status", "stage", "scope", "trigger", "method", "charge_type", "must_beat_current", "provider"]
    search_fields = ["=guid", "provider__name", "started_by", "cancelled_by"]
    readonly_fields = ["guid", "run", "created_at", "started_at", "finished_at", "stage_timings", "started_by",
                       "cancelled_by"]
    raw_id_fields = ["run", "customer", "parent"]


@admin.register(ProgressEvent)
class ProgressEventAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "sequence", "kind", "progress", "error_message", "attempts", "delivered_at",
                    "dead_lettered_at", "last_error"]
    list_filter = ["kind", "delivered_at", "dead_lettered_at"]
    actions = ["resend"]

    @admin.action(description="Re-send dead-lettered events to AMOP")
    def resend(self, request, queryset):
        count = events_resend(event_ids=queryset.values_list("pk", flat=True))
        if count:
            enqueue_on_commit("sessions.tasks.deliver_events")
        skipped = queryset.count() - count
        self.message_user(request, f"{count} dead-lettered event(s) queued to be sent again"
                          + (f"; {skipped} not dead-lettered, left as they are." if skipped else "."),
                          messages.SUCCESS if count else messages.WARNING)
    search_fields = ["=event_id", "error_message"]
    readonly_fields = [f.name for f in ProgressEvent._meta.fields]
