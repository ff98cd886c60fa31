"""REST API of optimization sessions: start, list, detail, cancel, events, groups, assignments, report."""
from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from carrieropt.actors import user_actor
from carrieropt.api.base import ErrorSerializer, Pagination, TenantApi, scope_field
from devices.api import tenant_customer
from devices.customers import customer_providers
from optimizer.assignments import AssignmentPaginator, list_count
from optimizer.filters import AssignmentFilterSet
from optimizer.models import CommGroup, DeviceAssignment
from optimizer.serializers import AssignmentOut, CommGroupOut
from rateplans.models import BillingPeriod, ServiceProvider
from sessions import services
from sessions.models import OptimizationSession, ProgressEvent, Trigger
from sessions.reports import XLSX_MIME, report_name, report_open
from sessions.serializers import ProgressEventOut, SessionFilter, SessionOut, SessionStartIn

CONFLICT = OpenApiResponse(ErrorSerializer, description="A session is already active for this carrier account "
                                                        "(start), the session_guid names another account's session or "
                                                        "one started with other options (start), the billing period "
                                                        "has not started or has ended and sync_devices is true "
                                                        "(start, billing_period_unavailable), or the session has "
                                                        "already ended (cancel).")


class SessionApi(TenantApi):
    """Views under /api/sessions/<guid>/: the session is looked up within the caller's tenants."""

    def session(self) -> OptimizationSession:
        return get_object_or_404(OptimizationSession.objects.filter(tenant__in=self.tenants), guid=self.kwargs["guid"])


class SessionListApi(TenantApi, generics.ListAPIView):
    """Optimization sessions, newest first; POST starts one (409 while one is active for the account)."""

    serializer_class = SessionOut

    def get_queryset(self):
        filters = self.query(SessionFilter)
        qs = OptimizationSession.objects.filter(tenant__in=self.tenants).select_related(
            "provider", "billing_period", "run__realized", "parent")
        if "provider" in filters:
            qs = qs.filter(provider_id=filters["provider"])
        if "status" in filters:
            qs = qs.filter(status=filters["status"])
        if "customer" in filters:
            qs = qs.filter(provider_id__in=customer_providers(customer=tenant_customer(self, filters["customer"])))
        return qs.order_by("-created_at", "-pk")

    @extend_schema(parameters=[SessionFilter])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(operation_id="sessions_start", request=SessionStartIn, responses={
        201: SessionOut, 200: OpenApiResponse(SessionOut, description="The session this `session_guid` already names."),
        409: CONFLICT})
    def post(self, request):
        data = SessionStartIn(data=request.data)
        scope_field(data, "provider", ServiceProvider.objects.filter(tenant__in=self.tenants))
        scope_field(data, "billing_period", BillingPeriod.objects.filter(provider__tenant__in=self.tenants))
        data.is_valid(raise_exception=True)
        start = dict(data.validated_data)
        if "customer" in start:
            start["customer"] = tenant_customer(self, start["customer"])
        guid = start.pop("session_guid", None)
        if guid is None:
            session, created = services.session_start(trigger=Trigger.API, started_by=user_actor(request.user), **start), True
        else:
            session, created = services.session_start_once(guid=guid, trigger=Trigger.API,
                                                           started_by=user_actor(request.user), **start)
        return Response(SessionOut(session, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class SessionDetailApi(SessionApi, generics.RetrieveAPIView):
    """One session: status, stage, percentage, stage timings, totals, lower bound and gap."""

    serializer_class = SessionOut
    lookup_field = "guid"

    def get_queryset(self):
        return OptimizationSession.objects.filter(tenant__in=self.tenants).select_related(
            "provider", "billing_period", "run__realized")


class SessionCancelApi(SessionApi):
    """Cancel an active session (409 when it has already ended)."""

    serializer_class = SessionOut

    @extend_schema(operation_id="sessions_cancel", request=None, responses={200: SessionOut, 409: CONFLICT})
    def post(self, request, guid):
        session = services.session_cancel(session=self.session(), cancelled_by=user_actor(request.user))
        return Response(SessionOut(session, context=self.get_serializer_context()).data)


class SessionEventsApi(SessionApi, generics.ListAPIView):
    """The progress and error events of a session, in order (what AMOP receives)."""

    serializer_class = ProgressEventOut

    def get_queryset(self):
        return ProgressEvent.objects.filter(session=self.session()).order_by("sequence")


class SessionGroupsApi(SessionApi, generics.ListAPIView):
    """The communication groups of a session with their costs, bound and winning method."""

    serializer_class = CommGroupOut

    def get_queryset(self):
        return (CommGroup.objects.filter(run_id=self.session().run_id)
                .prefetch_related("communication_plans", "rate_plans").order_by("name", "pk"))


class AssignmentPagination(Pagination):
    """Pages of a run's SIMs as the dashboard reads them (AssignmentPaginator: the page's ICCIDs through the
    ordering's index, then their rows), with a length the view may know already (list_count)."""

    known_count: int | None = None

    def django_paginator_class(self, object_list, per_page):
        return AssignmentPaginator(object_list, per_page, rows=object_list, count=self.known_count)


class FilterSetKeptBackend(DjangoFilterBackend):
    """DjangoFilterBackend that leaves the filterset it built on the view, for what the view reads of its filters."""

    def get_filterset(self, request, queryset, view):
        view.filterset = super().get_filterset(request, queryset, view)
        return view.filterset


class SessionAssignmentsApi(SessionApi, generics.ListAPIView):
    """Per-SIM current and recommended rate plans: filtered by group, change, plans, customer or ICCID; sorted by
    ICCID or saving (the dashboard's SIM list and its CSV export take the same filters)."""

    serializer_class = AssignmentOut
    filter_backends = [FilterSetKeptBackend]
    filterset_class = AssignmentFilterSet
    queryset = DeviceAssignment.objects.none()  # the schema's model; get_queryset serves the rows
    pagination_class = AssignmentPagination

    def get_queryset(self):
        # 404 for a foreign session comes before any 400 about the filters; its run tells the list's length.
        self.listed = get_object_or_404(OptimizationSession.objects.filter(tenant__in=self.tenants)
                                        .select_related("run"), guid=self.kwargs["guid"])
        return (DeviceAssignment.objects.filter(run_id=self.listed.run_id)
                .select_related("comm_group", "current_plan", "recommended_plan", "customer"))

    def filter_queryset(self, queryset):
        qs = super().filter_queryset(queryset)  # a bad filter has answered 400/404 by now: self.filterset is valid
        self.paginator.known_count = list_count(run=self.listed.run, filters=self.filterset.form.cleaned_data)
        return qs


class SessionReportApi(SessionApi):
    """Download the Excel report (404 until the session has written it)."""

    @extend_schema(responses={(200, XLSX_MIME): OpenApiTypes.BINARY})
    def get(self, request, guid):
        session = self.session()
        report = report_open(session.report_path)  # from the reports storage, whichever machine wrote it
        if report is None:
            raise NotFound("No report has been written for this session yet.")
        return FileResponse(report, as_attachment=True, filename=report_name(session=session), content_type=XLSX_MIME)
