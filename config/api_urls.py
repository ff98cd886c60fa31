"""The REST API's URL map (mounted at /api/); anything else under /api/ is a JSON 404."""
from django.urls import path, re_path, register_converter

from carrieropt.api.base import MAX_ID, api_not_found
from devices import api as devices
from pushes import api as pushes
from rateplans import api as rateplans
from sessions import api as sessions

app_name = "api"


class IdConverter:
    """A row id: 1 .. 2**63-1; anything else matches no route (the JSON 404 below), never a database error."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError(value)
        return number

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("providers/", rateplans.ProviderListApi.as_view(), name="provider-list"),
    path("providers/<id:pk>/", rateplans.ProviderDetailApi.as_view(), name="provider-detail"),
    path("rate-plans/", rateplans.RatePlanListApi.as_view(), name="rate-plan-list"),
    path("rate-plans/<id:pk>/", rateplans.RatePlanDetailApi.as_view(), name="rate-plan-detail"),
    path("communication-plans/", rateplans.CommunicationPlanListApi.as_view(), name="communication-plan-list"),
    path("communication-plans/<id:pk>/", rateplans.CommunicationPlanDetailApi.as_view(),
         name="communication-plan-detail"),
    path("devices/", devices.DeviceListApi.as_view(), name="device-list"),
    path("devices/<id:pk>/", devices.DeviceDetailApi.as_view(), name="device-detail"),
    path("customers/", devices.CustomerListApi.as_view(), name="customer-list"),
    path("customers/<id:pk>/", devices.CustomerDetailApi.as_view(), name="customer-detail"),
    path("pins/", devices.PinListApi.as_view(), name="pin-list"),
    path("pins/<id:pk>/", devices.PinDetailApi.as_view(), name="pin-detail"),
    path("sessions/", sessions.SessionListApi.as_view(), name="session-list"),
    path("sessions/<uuid:guid>/", sessions.SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<uuid:guid>/cancel/", sessions.SessionCancelApi.as_view(), name="session-cancel"),
    path("sessions/<uuid:guid>/events/", sessions.SessionEventsApi.as_view(), name="session-events"),
    path("sessions/<uuid:guid>/groups/", sessions.SessionGroupsApi.as_view(), name="session-groups"),
    path("sessions/<uuid:guid>/assignments/", sessions.SessionAssignmentsApi.as_view(), name="session-assignments"),
    path("sessions/<uuid:guid>/report/", sessions.SessionReportApi.as_view(), name="session-report"),
    path("sessions/<uuid:guid>/apply/", pushes.SessionApplyApi.as_view(), name="session-apply"),
    path("sessions/<uuid:guid>/budget/", pushes.SessionBudgetApi.as_view(), name="session-budget"),
    path("sessions/<uuid:guid>/pushes/", pushes.SessionPushesApi.as_view(), name="session-pushes"),
    path("pushes/<id:pk>/", pushes.PushApi.as_view(), name="push-detail"),
    # Paths ending without a slash are left to APPEND_SLASH's redirect.
    re_path(r"^(?:[\s\S]*/)?$", api_not_found),  # [\s\S]: a path may hold a newline
]
