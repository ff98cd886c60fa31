"""The operator dashboard: sessions with live progress, a start button per carrier account, a session's results."""
from __future__ import annotations

import csv
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from carrieropt.api.base import user_tenants
from optimizer.assignments import CSV_COLUMNS, assignments_csv_rows, assignments_filtered, plan_migrations
from optimizer.selectors import PlanCost, plan_costs
from optimizer.serializers import AssignmentFilter
from rateplans.models import ServiceProvider
from sessions import services
from sessions.models import ACTIVE_STATUSES, OptimizationSession, SessionStatus, Stage, Trigger
from sessions.reports import report_file

CHART = {"width": 760, "height": 300, "top": 20, "bottom": 70, "left": 70, "right": 10}


def _list_page(request, *, refusal: dict | None = None, status: int = 200):
    tenants = user_tenants(request.user)
    providers = list(ServiceProvider.objects.filter(tenant__in=tenants, active=True).select_related("tenant")
                     .order_by("tenant__name", "name"))
    sessions = list(OptimizationSession.objects.filter(tenant__in=tenants).select_related("provider", "billing_period")
                    .order_by("-created_at", "-pk")[:50])
    active = {s.provider_id: s for s in OptimizationSession.objects.filter(
        tenant__in=tenants, status__in=ACTIVE_STATUSES).only("guid", "provider_id", "progress")}
    for provider in providers:
        provider.active_session = active.get(provider.pk)
    return render(request, "dashboard/sessions.html",
                  {"providers": providers, "sessions": sessions, "refusal": refusal,
                   "stage_labels": dict(Stage.choices), "status_labels": dict(SessionStatus.choices)}, status=status)


@login_required
def session_list(request):
    return _list_page(request)


@login_required
@require_POST
def session_start(request, provider_id: int):
    provider = get_object_or_404(ServiceProvider.objects.filter(tenant__in=user_tenants(request.user)), pk=provider_id)
    try:
        # An unchecked box is absent from the form: skip the sync and optimize the SIMs already stored.
        session = services.session_start(provider=provider, trigger=Trigger.DASHBOARD,
                                         sync_devices=request.POST.get("sync_devices") == "on")
    except services.SessionAlreadyRunning as exc:
        # The same refusal the API answers with 409, shown on the page that asked.
        refusal = {"provider": provider, "message": exc.message, "active": exc.extra.get("active_session")}
        return _list_page(request, refusal=refusal, status=409)
    messages.success(request, f"Started optimization session {session.guid} for {provider.name}.")
    return redirect("dashboard:session-list")


def cost_chart(costs: list[PlanCost]) -> dict:
    """Bar geometry for the before/after chart, drawn as inline SVG (nothing fetched from elsewhere)."""
    c = CHART
    plot_w = c["width"] - c["left"] - c["right"]
    plot_h = c["height"] - c["top"] - c["bottom"]
    top_value = max([float(x.cost_before or 0) for x in costs] + [float(x.cost_after) for x in costs] + [0.0])
    scale = plot_h / top_value if top_value > 0 else 0.0
    slot = plot_w / max(len(costs), 1)
    bar = min(28.0, slot * 0.35)
    bars = []
    for i, x in enumerate(costs):
        left = c["left"] + i * slot + slot / 2 - bar
        before_h = float(x.cost_before or 0) * scale
        after_h = float(x.cost_after) * scale
        bars.append({
            "code": x.code, "label_x": c["left"] + i * slot + slot / 2, "cost_before": x.cost_before,
            "cost_after": x.cost_after, "sims_before": x.sims_before, "sims_after": x.sims_after,
            "before": {"x": left, "y": c["top"] + plot_h - before_h, "h": before_h},
            "after": {"x": left + bar, "y": c["top"] + plot_h - after_h, "h": after_h},
        })
    ticks = [{"y": c["top"] + plot_h - plot_h * k / 4, "value": top_value * k / 4} for k in range(5)]
    return {**c, "bars": bars, "bar": bar, "ticks": ticks, "axis_y": c["top"] + plot_h, "plot_right": c["width"] - c["right"]}


def _session(request, guid) -> OptimizationSession:
    """The session of one of the user's tenants (404 for anyone else's)."""
    return get_object_or_404(
        OptimizationSession.objects.filter(tenant__in=user_tenants(request.user))
        .select_related("provider", "billing_period", "tenant", "run"), guid=guid)


@login_required
def session_detail(request, guid):
    session = _session(request, guid)
    groups = list(session.run.comm_groups.prefetch_related("rate_plans").order_by("name", "pk"))
    for g in groups:
        g.savings = g.figures.savings
    costs = plan_costs(run=session.run)
    matrix = plan_migrations(run_id=session.run_id) if costs else None
    figures = session.figures
    savings_pct = None if figures.savings_ratio is None else figures.savings_ratio * 100
    return render(request, "dashboard/session.html", {
        "session": session, "groups": groups, "chart": cost_chart(costs) if costs else None,
        "has_report": report_file(session.report_path) is not None, "savings_pct": savings_pct,
        "gap_pct": None if figures.gap is None else figures.gap * 100,
        # jsonb does not keep key order: list the stages in the order they ran.
        "timings": sorted(((stage, t) for stage, t in (session.stage_timings or {}).items() if isinstance(t, dict)),
                          key=lambda item: item[1].get("started", "")),
        "stage_labels": dict(Stage.choices),
        "matrix": matrix,
        "matrix_rows": [{"plan": p, "cells": matrix.row(p)} for p in matrix.plans] if matrix else [],
    })


SIMS_PER_PAGE = 50


def _sim_filters(request) -> tuple[dict, dict]:
    """Validated filters of the SIM list from the query string, and the errors (field -> messages) if any."""
    params = AssignmentFilter(data={k: v for k, v in request.GET.items() if k != "page"})
    if params.is_valid():
        return dict(params.validated_data), {}
    return {"sort": "iccid"}, {field: [str(m) for m in msgs] for field, msgs in params.errors.items()}


@login_required
def session_sims(request, guid):
    """A session's SIMs, a page at a time: filter to changes, a group, a move or an ICCID; sort by saving."""
    session = _session(request, guid)
    filters, errors = _sim_filters(request)
    qs = assignments_filtered(run_id=session.run_id, filters=filters).select_related(
        "comm_group", "current_plan", "recommended_plan")
    page = Paginator(qs, SIMS_PER_PAGE).get_page(request.GET.get("page"))
    query = {k: v for k, v in request.GET.items() if k != "page" and v != ""}
    groups = list(session.run.comm_groups.order_by("name", "pk").values_list("pk", "name"))
    plans = sorted(set(session.provider.rate_plans.values_list("code", flat=True)))
    return render(request, "dashboard/session_sims.html", {
        "session": session, "page": page, "filters": filters, "errors": errors, "groups": groups, "plans": plans,
        "query": urlencode(query), "sorts": [("iccid", "ICCID"), ("-saving", "Largest saving first"),
                                             ("saving", "Smallest saving first"), ("-usage", "Most usage first")],
    }, status=400 if errors else 200)


class _Echo:
    """A file-like object whose write returns the line: csv.writer formats, the response streams."""

    def write(self, value):
        return value


@login_required
def session_sims_csv(request, guid):
    """The filtered SIM list as CSV, streamed row by row (a million rows never sit in memory)."""
    session = _session(request, guid)
    filters, errors = _sim_filters(request)
    if errors:
        return render(request, "dashboard/session_sims.html", {"session": session, "errors": errors, "page": None},
                      status=400)
    writer = csv.writer(_Echo())
    rows = assignments_csv_rows(assignments_filtered(run_id=session.run_id, filters=filters))

    def lines():
        yield writer.writerow(CSV_COLUMNS)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="session-{session.guid}-sims.csv"'
    return response
