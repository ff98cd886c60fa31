"""The operator dashboard: sessions with live progress, a start button per carrier account, a session's results."""
from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from carrieropt.actors import user_actor
from carrieropt.api.base import user_tenants
from carrieropt.errors import MISSING_ROW_CODES, ApplicationError, NotFound, ValidationFailed
from carrieropt.options import ChargeType, Method
from carrieropt.workers import NO_CLUSTER, clusters_alive
from devices import pins
from devices.customers import customer_providers
from devices.models import Customer, DevicePin, DeviceUsage
from devices.pins import can_pin, can_unpin
from optimizer.assignments import (
    CSV_COLUMNS,
    AssignmentPaginator,
    UsageBin,
    assignments_csv_rows,
    list_count,
    plan_migrations,
    run_plan_moves,
    run_usage,
)
from optimizer.filters import SORT_CHOICES, AssignmentFilterSet
from optimizer.models import DeviceAssignment, KeptReason, RunRealized
from optimizer.selectors import PlanCost, plan_costs
from rateplans.models import ServiceProvider
from sessions import services
from sessions.crossprovider import session_accounts
from sessions.frontier import frontier_chart, frontier_rows
from sessions.models import ACTIVE_STATUSES, OptimizationSession, Scope, SessionStatus, Stage, Trigger
from sessions.realized import session_realized
from sessions.reports import report_exists

CHART = {"width": 760, "height": 300, "top": 20, "bottom": 70, "left": 70, "right": 10}
NO_USAGE_SHOWN = 200  # ICCIDs listed on the session page; all of them are in the report and the API


def _list_page(request, *, refusal: dict | None = None, status: int = 200):
    tenants = user_tenants(request.user)
    providers = list(ServiceProvider.objects.filter(tenant__in=tenants, active=True).select_related("tenant")
                     .order_by("tenant__name", "name"))
    listed = OptimizationSession.objects.filter(tenant__in=tenants).select_related("provider", "billing_period",
                                                                                  "customer")
    # The user's customers, once: the list's filter and each account's start form ("SIMs of").
    rows = list(Customer.objects.filter(tenant__in=tenants).order_by("name").values_list("pk", "name", "tenant_id"))
    customers = [(pk, name) for pk, name, _ in rows]
    customer, customer_error = _customer_asked(request, customers)
    if customer is not None:
        listed = listed.filter(provider_id__in=customer_providers(customer=customer))
    sessions = list(listed.order_by("-created_at", "-pk")[:50])
    active = {s.provider_id: s for s in OptimizationSession.objects.filter(
        tenant__in=tenants, status__in=ACTIVE_STATUSES).only("guid", "provider_id", "progress")}
    by_tenant: dict[int, list[tuple[int, str]]] = {}
    for pk, name, tenant_id in rows:
        by_tenant.setdefault(tenant_id, []).append((pk, name))
    for provider in providers:
        provider.active_session = active.get(provider.pk)
        # The start form's "SIMs of" choices: every SIM, or one of the tenant's customers (here, or everywhere).
        provider.start_customers = by_tenant.get(provider.tenant_id, [])
        provider.cross_provider = provider.tenant.cross_provider_enabled
    if customer_error:
        sessions = []  # the list of every session would pass for the customer's
        if status == 200:
            status = 404  # as the API: a customer the user has none of is not found
    return render(request, "dashboard/sessions.html",
                  {"providers": providers, "sessions": sessions, "refusal": refusal, "customers": customers,
                   "customer": customer, "customer_error": customer_error,
                   "methods": Method.choices, "charge_types": ChargeType.choices,
                   "stage_labels": dict(Stage.choices), "status_labels": dict(SessionStatus.choices)}, status=status)


def _customer_asked(request, customers: list[tuple[int, str]]) -> tuple[Customer | None, str]:
    """The customer the list is filtered by (?customer=id, one of the user's tenants'), or why it is refused."""
    raw = request.GET.get("customer", "")
    if not raw:
        return None, ""
    if raw.isdigit() and int(raw) in {pk for pk, _ in customers}:
        return Customer.objects.get(pk=int(raw)), ""
    return None, f"No customer {raw} among your tenant's customers."


@login_required
def session_list(request):
    return _list_page(request)


def _budget_field(raw: str | None) -> int | None:
    """The start form's change budget: empty is the account's default; anything else must be a whole number."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(f"max_changes: {raw!r} is not a whole number of SIMs.", field="max_changes") from None


def _scope_field(raw: str | None, provider: ServiceProvider) -> tuple[str, Customer | None]:
    """The start form's "SIMs of" choice: "" (every SIM: carrier), "<customer id>" (that customer's SIMs on the
    account) or "<customer id>:all" (on every account of the tenant: cross-provider)."""
    raw = (raw or "").strip()
    if not raw:
        return Scope.CARRIER, None
    pk, _, every = raw.partition(":")
    if not pk.isdigit() or every not in ("", "all"):
        raise ValidationFailed(f"customer: {raw!r} is not a customer of the form.", field="customer")
    customer = Customer.objects.filter(pk=int(pk), tenant_id=provider.tenant_id).select_related("tenant").first()
    if customer is None:
        raise NotFound(f"customer: {pk} is not a customer of {provider.name!r}'s tenant.", field="customer")
    return (Scope.CROSS_PROVIDER if every else Scope.CUSTOMER), customer


@login_required
@require_POST
def session_start(request, provider_id: int):
    provider = get_object_or_404(ServiceProvider.objects.filter(tenant__in=user_tenants(request.user)), pk=provider_id)
    try:
        scope, customer = _scope_field(request.POST.get("customer"), provider)
        # An unchecked box is absent from the form: skip the sync and optimize the SIMs already stored.
        # The form always sends the options (preselected with the account's defaults); absent ones are the defaults.
        session = services.session_start(
            provider=None if scope == Scope.CROSS_PROVIDER else provider, scope=scope, customer=customer,
            trigger=Trigger.DASHBOARD, started_by=user_actor(request.user), sync_devices=request.POST.get("sync_devices") == "on",
            method=request.POST.get("method") or None, charge_type=request.POST.get("charge_type") or None,
            must_beat_current=(request.POST.get("must_beat_current") == "on") if "options" in request.POST else None,
            max_changes=_budget_field(request.POST.get("max_changes")))
    except services.SessionAlreadyRunning as exc:
        # The same refusal the API answers with 409, shown on the page that asked.
        refusal = {"provider": provider, "message": exc.message, "active": exc.extra.get("active_session")}
        return _list_page(request, refusal=refusal, status=409)
    except ApplicationError as exc:  # the API's answer (400, 404 or 409), shown on the page that asked
        return _list_page(request, refusal={"provider": provider, "message": exc.message}, status=exc.http_status)
    messages.success(request, f"Started optimization session {session.guid} for "
                              f"{provider.name if customer is None else customer.name}"
                              f"{' on every account it has SIMs on' if scope == Scope.CROSS_PROVIDER else ''}.")
    if not clusters_alive():
        messages.warning(request, f"Session {session.guid}: {NO_CLUSTER}.")
    return redirect("dashboard:session-list")


@dataclass(frozen=True)
class Bars:
    """One slot of a before/after bar chart: its label, the two values, and the text shown on hover."""

    label: str
    before: Decimal | None
    after: Decimal | None
    before_note: str = ""
    after_note: str = ""


def bar_chart(slots: list[Bars]) -> dict:
    """Bar geometry for a before/after chart, drawn as inline SVG (nothing fetched from elsewhere)."""
    c = CHART
    plot_w = c["width"] - c["left"] - c["right"]
    plot_h = c["height"] - c["top"] - c["bottom"]
    top_value = max([float(x.before or 0) for x in slots] + [float(x.after or 0) for x in slots] + [0.0])
    scale = plot_h / top_value if top_value > 0 else 0.0
    slot = plot_w / max(len(slots), 1)
    bar = min(28.0, slot * 0.35)
    bars = []
    for i, x in enumerate(slots):
        left = c["left"] + i * slot + slot / 2 - bar
        # A negative value (a saving that was a loss) draws no bar; its title still says it.
        before_h = max(0.0, float(x.before or 0)) * scale
        after_h = max(0.0, float(x.after or 0)) * scale
        bars.append({
            "label": x.label, "label_x": c["left"] + i * slot + slot / 2, "value_before": x.before,
            "value_after": x.after, "before_note": x.before_note, "after_note": x.after_note,
            "before": {"x": left, "y": c["top"] + plot_h - before_h, "h": before_h},
            "after": {"x": left + bar, "y": c["top"] + plot_h - after_h, "h": after_h},
        })
    ticks = [{"y": c["top"] + plot_h - plot_h * k / 4, "value": top_value * k / 4} for k in range(5)]
    return {**c, "bars": bars, "bar": bar, "ticks": ticks, "axis_y": c["top"] + plot_h, "plot_right": c["width"] - c["right"]}


def cost_chart(costs: list[PlanCost]) -> dict:
    """Cost per rate plan before and after."""
    return bar_chart([Bars(x.code, x.cost_before, x.cost_after, f"{x.sims_before} SIMs", f"{x.sims_after} SIMs")
                      for x in costs])


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
    moves = run_plan_moves(run=session.run)  # one pass over the run's rows for the chart and the matrix, kept
    costs = plan_costs(run=session.run, moves=moves)
    matrix = plan_migrations(run_id=session.run_id, moves=moves) if costs else None
    figures = session.figures
    savings_pct = None if figures.savings_ratio is None else figures.savings_ratio * 100
    rows = frontier_rows(session)
    realized = session_realized(session)
    compared = {a["provider"]: a for a in (session.comparison or {}).get("accounts", [])}
    # Each account's session, with its row of the comparison once the cross-provider session has written it.
    accounts = ([(m, compared.get(m.provider_id)) for m in session_accounts(session)]
                if session.scope == Scope.CROSS_PROVIDER else [])
    return render(request, "dashboard/session.html", {
        "accounts": accounts, "comparison": session.comparison or None,
        "frontier": rows, "frontier_chart": frontier_chart(rows), "budget": next((r for r in rows if r.chosen), None),
        "realized": realized, "realized_view": realized_view(realized) if realized else None,
        "cycle_ended": timezone.now() >= session.billing_period.ends_at(),
        "final_usage_delay_hours": settings.FINAL_USAGE_DELAY_HOURS,
        "session": session, "currency": session.provider.currency, "groups": groups,
        "chart": cost_chart(costs) if costs else None,
        "has_report": report_exists(session.report_path), "savings_pct": savings_pct,
        "gap_pct": None if figures.gap is None else figures.gap * 100,
        "timings": stage_timings(session),
        "took_seconds": (session.finished_at - session.created_at).total_seconds() if session.finished_at else None,
        "stage_labels": dict(Stage.choices),
        "matrix": matrix,
        "matrix_rows": [{"plan": p, "cells": matrix.row(p)} for p in matrix.plans] if matrix else [],
        "no_usage_shown": session.no_usage_iccids[:NO_USAGE_SHOWN],
        "no_usage_more": max(0, len(session.no_usage_iccids) - NO_USAGE_SHOWN),
    })


def _pct(ratio) -> float | None:
    return None if ratio is None else float(ratio) * 100


def realized_view(realized: RunRealized) -> dict:
    """The realized savings in the words of the page: percentages, and each group's figures as numbers."""
    figures = realized.figures
    groups = [{**g, "projection_error_pct": _pct(g["projection_error"]),
               **{k: Decimal(g[k]) for k in ("cost_before", "cost_after", "savings", "projected_savings",
                                              "projected_mb", "final_mb")}} for g in realized.groups]
    return {"savings": figures.savings, "savings_pct": _pct(figures.savings_ratio),
            "projection_error_pct": _pct(realized.projection_error), "groups": groups,
            "other_changes": realized.changes_made - realized.changes_followed,
            "missing_shown": realized.missing_sims[:NO_USAGE_SHOWN],
            "missing_more": max(0, realized.missing - min(len(realized.missing_sims), NO_USAGE_SHOWN))}


def _moment(value: str | None, tz) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value).astimezone(tz) if value else None


def stage_timings(session: OptimizationSession) -> list[dict]:
    """The stages in the order they ran, their moments in the account's time zone."""
    tz = session.provider.tz
    # jsonb does not keep key order: sort by when each stage started.
    rows = sorted(((stage, t) for stage, t in (session.stage_timings or {}).items() if isinstance(t, dict)),
                  key=lambda item: item[1].get("started", ""))
    return [{"stage": stage, "started": _moment(t.get("started"), tz), "finished": _moment(t.get("finished"), tz),
             "seconds": t.get("seconds")} for stage, t in rows]


@login_required
def provider_detail(request, provider_id: int):
    """An account's history: savings per billing cycle (the last completed session of each), and its sessions."""
    provider = get_object_or_404(ServiceProvider.objects.filter(tenant__in=user_tenants(request.user))
                                 .select_related("tenant"), pk=provider_id)
    sessions = list(OptimizationSession.objects.filter(provider=provider).select_related("billing_period")
                    .order_by("-created_at", "-pk")[:100])
    cycles: dict[int, OptimizationSession] = {}
    for s in sorted((s for s in sessions if s.is_complete), key=lambda s: s.created_at):
        cycles[s.billing_period_id] = s  # the latest completed session of each cycle speaks for it
    history = sorted(cycles.values(), key=lambda s: s.billing_period.start_date)
    chart = bar_chart([Bars(f"{s.billing_period.start_date:%b %Y}", s.current_cost, s.optimized_cost,
                            f"current plans, {s.device_count} SIMs",
                            f"recommended: saves {s.savings:,.2f}" if s.savings is not None else "")
                       for s in history]) if history else None
    # Ended cycles whose final usage was read: what the recommendation of the cycle's session actually saved.
    realized = {r.run_id: r for r in RunRealized.objects.filter(run_id__in=[s.run_id for s in history])}
    for s in history:
        s.realized = realized.get(s.run_id)
        s.realized_error_pct = _pct(s.realized.projection_error) if s.realized else None
        s.cycle_ended = timezone.now() >= s.billing_period.ends_at()
    ended = [s for s in history if s.realized]
    realized_chart = bar_chart([Bars(f"{s.billing_period.start_date:%b %Y}", s.realized.projected_savings,
                                     s.realized.figures.savings, "projected for the SIMs priced",
                                     f"realized on final usage, {s.realized.priced} SIMs") for s in ended]) if ended else None
    return render(request, "dashboard/provider.html", {
        "provider": provider, "currency": provider.currency, "sessions": sessions, "history": history, "chart": chart,
        "realized_chart": realized_chart,
        "status_labels": dict(SessionStatus.choices)})


HISTOGRAM = {"width": 760, "height": 210, "top": 16, "bottom": 60, "left": 60, "right": 10}


def _mb(value: Decimal) -> str:
    return f"{value / 1024:g} GB" if value >= 1024 else f"{value:g} MB"


def histogram_chart(bins: list[UsageBin], plans: dict[Decimal, list[str]]) -> dict:
    """Bars of SIMs per usage bin, each bin labelled with its range and the group's plans it fits."""
    c = HISTOGRAM
    plot_w, plot_h = c["width"] - c["left"] - c["right"], c["height"] - c["top"] - c["bottom"]
    top = max([b.sims for b in bins] + [1])
    slot = plot_w / max(len(bins), 1)
    bars = []
    for i, b in enumerate(bins):
        if b.low is None:
            label = "0 MB"
        elif b.high is None:
            label = f"> {_mb(b.low)}"
        else:
            label = f"≤ {_mb(b.high)}"
        h = plot_h * b.sims / top
        bars.append({"x": c["left"] + i * slot + slot * 0.15, "w": slot * 0.7, "y": c["top"] + plot_h - h, "h": h,
                     "sims": b.sims, "label": label, "label_x": c["left"] + i * slot + slot / 2,
                     "plans": ", ".join(plans.get(b.high, [])) if b.high is not None else ""})
    return {**c, "bars": bars, "axis_y": c["top"] + plot_h, "plot_right": c["width"] - c["right"], "top": top}


@login_required
def session_usage(request, guid):
    """Per group: how the SIMs' usage falls between the plans' allowances, and how full each pool is."""
    session = _session(request, guid)
    groups = list(session.run.comm_groups.prefetch_related("rate_plans").order_by("name", "pk"))
    histograms, fills = run_usage(run=session.run)
    for g in groups:
        plans: dict[Decimal, list[str]] = {}
        for p in g.rate_plans.all():
            plans.setdefault(p.included_mb, []).append(p.code)
        g.histogram = histogram_chart(histograms[g.pk], plans) if g.pk in histograms else None
        g.pools = [f for f in fills if f.group_id == g.pk]
    return render(request, "dashboard/session_usage.html", {"session": session, "groups": groups})


SIMS_PER_PAGE = 50


def _sim_filters(request, session: OptimizationSession) -> tuple[AssignmentFilterSet, dict, int]:
    """The session's SIM list filtered by the query string (the API's AssignmentFilterSet), the errors
    (field -> messages) if any, and the status they answer with, as the API's: 404 when a filter names a row
    the user has none of (an unknown or another tenant's customer), 400 for a value that is no filter."""
    base = DeviceAssignment.objects.filter(run_id=session.run_id)
    filterset = AssignmentFilterSet({k: v for k, v in request.GET.items() if k != "page"}, queryset=base,
                                    request=request)
    if filterset.is_valid():
        return filterset, {}, 200
    errors = {field: [str(m) for m in msgs] for field, msgs in filterset.errors.items()}
    codes = {e.code for errs in filterset.form.errors.as_data().values() for e in errs}
    return filterset, errors, 404 if codes <= MISSING_ROW_CODES else 400


def _sims_page(request, session: OptimizationSession, filterset: AssignmentFilterSet, errors: dict,
               status: int):
    """The SIM list page. With a filter in error it shows the form (the valid filters kept), the error and a
    link without the bad filters, and no SIMs: a list that ignored the filter would pass for its answer."""
    page = None
    if not errors:
        rows = DeviceAssignment.objects.filter(run_id=session.run_id).select_related(
            "comm_group", "current_plan", "recommended_plan", "customer", "device__pin")
        page = AssignmentPaginator(filterset.qs, SIMS_PER_PAGE, rows=rows,
                                   count=list_count(run=session.run, filters=filterset.form.cleaned_data)
                                   ).get_page(request.GET.get("page"))
    query = {k: v for k, v in request.GET.items() if k != "page" and v != ""}
    groups = list(session.run.comm_groups.order_by("name", "pk").values_list("pk", "name"))
    plans = sorted(set(session.provider.rate_plans.values_list("code", flat=True)))
    customers = list(Customer.objects.filter(tenant=session.tenant).order_by("name").values_list("pk", "name"))
    return render(request, "dashboard/session_sims.html", {
        "session": session, "currency": session.provider.currency, "page": page,
        "filters": filterset.form.cleaned_data, "errors": errors,
        "groups": groups, "plans": plans, "customers": customers, "can_pin": can_pin(request.user),
        "query": urlencode(query), "here": request.get_full_path(), "sorts": SORT_CHOICES,
        "without_errors": urlencode({k: v for k, v in query.items() if k not in errors}),
    }, status=status)


@login_required
def session_sims(request, guid):
    """A session's SIMs, a page at a time: filter to changes, a group, a move, a customer or an ICCID; sort by
    saving; pin or unpin a SIM from its row (with the permission)."""
    session = _session(request, guid)
    return _sims_page(request, session, *_sim_filters(request, session))


class _Echo:
    """A file-like object whose write returns the line: csv.writer formats, the response streams."""

    def write(self, value):
        return value


@login_required
def session_sims_csv(request, guid):
    """The filtered SIM list as CSV, streamed row by row (a million rows never sit in memory)."""
    session = _session(request, guid)
    filterset, errors, status = _sim_filters(request, session)
    if errors:
        return _sims_page(request, session, filterset, errors, status)
    writer = csv.writer(_Echo())
    rows = assignments_csv_rows(filterset.qs)

    def lines():
        yield writer.writerow(CSV_COLUMNS)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="session-{session.guid}-sims.csv"'
    return response


def _assignment(session: OptimizationSession, iccid: str) -> DeviceAssignment:
    return get_object_or_404(
        DeviceAssignment.objects.filter(run_id=session.run_id).select_related(
            "comm_group", "current_plan", "recommended_plan", "customer", "device__pin__pinned_by",
            "device__rate_plan"),
        iccid=iccid)


@login_required
def session_sim(request, guid, iccid: str):
    """One SIM of a session: its usage, the plans its group allows, its cost before and after, its pin."""
    session = _session(request, guid)
    assignment = _assignment(session, iccid)
    device = assignment.device
    usage = DeviceUsage.objects.filter(device=device, billing_period=session.billing_period).first()
    plans = list(assignment.comm_group.rate_plans.order_by("included_mb", "code"))
    pin = getattr(device, "pin", None)
    return render(request, "dashboard/session_sim.html", {
        "session": session, "currency": session.provider.currency, "a": assignment, "device": device,
        "usage": usage, "plans": plans, "pin": pin,
        "kept_label": dict(KeptReason.choices).get(assignment.kept_reason, ""),
        "can_pin": can_pin(request.user), "can_unpin": can_unpin(request.user),
        "back": _back(request, session),
    })


def _back(request, session: OptimizationSession) -> str:
    """Where to go after a pin: the page that asked (the filtered SIM list, or the SIM's page), on this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return reverse("dashboard:session-sims", args=[session.guid])


@login_required
@require_POST
def session_sim_pin(request, guid, iccid: str):
    """Pin the SIM to its current plan (with a reason), through the same rules as /api/pins/; tenant members
    with the pin permission only."""
    session = _session(request, guid)
    assignment = _assignment(session, iccid)
    if not can_pin(request.user):
        return render(request, "dashboard/refused.html", {"session": session, "message": pins.PIN_REFUSED},
                      status=403)
    try:
        pins.device_pin(device=assignment.device, reason=request.POST.get("reason", ""), user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"SIM {iccid} pinned to {assignment.device.rate_plan.code}: no session moves it "
                                  f"until it is unpinned.")
    return redirect(_back(request, session))


@login_required
@require_POST
def session_sim_unpin(request, guid, iccid: str):
    session = _session(request, guid)
    assignment = _assignment(session, iccid)
    if not can_unpin(request.user):
        return render(request, "dashboard/refused.html", {"session": session, "message": pins.PIN_REFUSED},
                      status=403)
    pin = DevicePin.objects.filter(device=assignment.device).first()
    if pin is None:
        messages.error(request, f"SIM {iccid} is not pinned.")
    else:
        pins.device_unpin(pin=pin)
        messages.success(request, f"SIM {iccid} unpinned: the next session may move it again.")
    return redirect(_back(request, session))
