"""REST API of rate-plan pushes: apply a session's recommendations (202/409) and follow its pushes."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from carrieropt.actors import user_actor
from carrieropt.api.base import ErrorSerializer, TenantApi
from pushes.counts import push_counts_many
from pushes.models import RatePlanPush
from pushes.permissions import APPLY_REFUSED, can_apply
from pushes.recommendations import session_apply
from pushes.serializers import PushOut
from sessions import services as session_services
from sessions.api import SessionApi
from sessions.serializers import SessionBudgetIn, SessionOut

APPLY_CONFLICT = OpenApiResponse(ErrorSerializer, description=(
    "`push_running`: a push of this carrier account is still running (`active_push` names it); "
    "`session_not_complete`: the session has not completed."))


class SessionApplyApi(SessionApi):
    """Push the session's recommended rate plans to the carrier (needs pushes.apply_recommendations: else 403).

    202 with the push: `decision` says Go (the push runs in the background; follow it at
    /api/sessions/{id}/pushes/) or No-Go (too little time before the billing period ends:
    recorded, e-mailed, nothing sent).
    """

    serializer_class = PushOut

    @extend_schema(operation_id="sessions_apply", request=None,
                   responses={202: PushOut, 403: ErrorSerializer, 409: APPLY_CONFLICT})
    def post(self, request, guid):
        session = self.session()  # another tenant's session is 404 before any permission is looked at
        if not can_apply(request.user):
            raise PermissionDenied(APPLY_REFUSED)
        push = session_apply(session=session, trigger="api", applied_by=user_actor(request.user))
        return Response(PushOut(push).data, status=status.HTTP_202_ACCEPTED)


class SessionBudgetApi(SessionApi):
    """Choose the change budget applying keeps to: a point of the session's frontier (its `max_changes`), or
    null for every recommended change (needs pushes.apply_recommendations: else 403; 400 naming max_changes for
    a budget below 0, 404 naming it for one that is not a point of the frontier, with the points in `budgets`)."""

    serializer_class = SessionOut

    @extend_schema(operation_id="sessions_budget", request=SessionBudgetIn,
                   responses={200: SessionOut, 400: ErrorSerializer, 403: ErrorSerializer})
    def post(self, request, guid):
        session = self.session()
        if not can_apply(request.user):
            raise PermissionDenied(APPLY_REFUSED)
        data = SessionBudgetIn(data=request.data)
        data.is_valid(raise_exception=True)
        session = session_services.session_budget_set(session=session, max_changes=data.validated_data["max_changes"])
        return Response(SessionOut(session, context={"request": request}).data)


class PushApi(TenantApi, generics.RetrieveAPIView):
    """One push with its Go/No-Go decision and live counts (sent, applied, refused, not sent, remaining, rate)."""

    serializer_class = PushOut

    def get_queryset(self):
        return RatePlanPush.objects.filter(provider__tenant__in=self.tenants).select_related("provider", "session")


class SessionPushesApi(SessionApi, generics.ListAPIView):
    """The session's pushes, newest first: decision, counts applied / failed / remaining, measured rate."""

    serializer_class = PushOut

    def get_queryset(self):
        return (RatePlanPush.objects.filter(session=self.session()).select_related("provider", "session")
                .order_by("-created_at", "-pk"))

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        pushes = list(queryset) if page is None else page
        # The live counts of the whole page in one query, not one per push.
        counts = push_counts_many(push_ids=[push.pk for push in pushes])
        for push in pushes:
            push._live_counts = counts[push.pk]
        return page
