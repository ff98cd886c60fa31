"""Dashboard pages of the push: preview the Go/No-Go and apply a session's recommendations, then watch the push."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render

from carrieropt.actors import user_actor
from carrieropt.api.base import user_tenants
from carrieropt.errors import ApplicationError
from pushes.counts import push_counts, push_rate_live
from pushes.decide import push_decide
from pushes.models import RatePlanPush
from pushes.permissions import APPLY_REFUSED, can_apply
from pushes.recommendations import session_apply, session_changes_summary
from pushes.tuning import PushTuning
from sessions import services as session_services
from sessions.models import OptimizationSession, Stage


@login_required
def session_budget_page(request, guid):
    """POST from the session page's frontier chart: the chosen point's budget is what applying pushes."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    session = get_object_or_404(OptimizationSession.objects.filter(tenant__in=user_tenants(request.user))
                                .select_related("run"), guid=guid)
    if not can_apply(request.user):
        messages.error(request, APPLY_REFUSED)
        return redirect("dashboard:session-detail", guid=guid)
    raw = request.POST.get("max_changes", "").strip()
    try:
        budget = None if raw in ("", "none") else int(raw)
        session_services.session_budget_set(session=session, max_changes=budget)
    except ValueError:
        messages.error(request, f"max_changes: {raw!r} is not a whole number.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Applying now pushes every recommended change." if budget is None
                         else f"Applying now pushes the answer with at most {budget:,} changes.")
    return redirect("dashboard:session-detail", guid=guid)


@login_required
def session_apply_page(request, guid):
    """GET: what applying would send and whether it would finish in time (nothing recorded). POST: apply."""
    session = get_object_or_404(OptimizationSession.objects.filter(tenant__in=user_tenants(request.user))
                                .select_related("provider", "billing_period__provider", "run"), guid=guid)
    allowed = can_apply(request.user)
    complete = session.is_complete and session.stage == Stage.COMPLETE
    error, status = "", 200
    if request.method == "POST":
        if not allowed:
            error, status = APPLY_REFUSED, 403
        elif request.POST.get("confirm") != "yes":
            error, status = "Tick the box to confirm that these SIMs change plan on the carrier.", 400
        else:
            try:
                push = session_apply(session=session, trigger="dashboard", applied_by=user_actor(request.user))
            except ApplicationError as exc:
                error, status = exc.message, 409
            else:
                return redirect("pushes:push-detail", pk=push.pk)
    summary = session_changes_summary(session=session) if complete else None
    changes, saving = (summary.changes, summary.saving) if summary else (0, 0)
    preview = None
    if changes:
        tuning = PushTuning.from_settings(provider=session.provider)
        preview = push_decide(provider=session.provider, period=session.billing_period, changes=changes,
                              batch_size=tuning.batch_size, verify_delay_seconds=tuning.verify_delay)
    pushes = list(RatePlanPush.objects.filter(session=session).order_by("-created_at", "-pk")[:20])
    return render(request, "pushes/apply.html", {
        "session": session, "complete": complete, "allowed": allowed, "changes": changes, "saving": saving,
        "preview": preview, "error": error, "pushes": pushes, "refused": APPLY_REFUSED,
    }, status=status)


@login_required
def push_detail(request, pk: int):
    """One push, live: sent, applied, refused, not sent, remaining, rate, and its verification."""
    push = get_object_or_404(RatePlanPush.objects.filter(provider__tenant__in=user_tenants(request.user))
                             .select_related("provider", "session"), pk=pk)
    counts = push_counts(push_id=push.pk)
    return render(request, "pushes/push.html", {
        "push": push, "counts": counts, "rate": push_rate_live(push=push, processed=counts.processed),
        "done_pct": round(100 * (counts.total - counts.remaining) / counts.total) if counts.total else 100,
    })

