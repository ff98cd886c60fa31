"""The progress outbox: AMOP 2.0 events written in the transaction of the change they report."""
from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from carrieropt.tasks import enqueue_on_commit
from optimizer.models import DeviceAssignment
from optimizer.serializers import money_out, ratio_out
from rateplans.models import ServiceProvider
from sessions.models import EventKind, OptimizationSession, ProgressEvent

PATHS = {
    EventKind.PROGRESS: "/get_optimization_progress_bar_data",
    EventKind.ERROR: "/get_optimization_error_details_data",
    EventKind.SYNC: "/lambda_sync_jobs_",
}
# The full list is in the API and the report; an event stays small enough for any webhook receiver.
NO_USAGE_ICCIDS_IN_EVENT = 1000
SYNC_KEYS = {"Jasper": "jasper_devices", "POD19": "jasper_devices", "TMobileJasper": "jasper_devices", "Rogers": "jasper_devices"}


def _session_payload(session: OptimizationSession, kind: str, progress: int | None, error_message: str) -> dict:
    period = session.billing_period
    customer = session.customer
    additional = {"data": {
        "BillPeriodId": period.pk,
        # A customer's session carries the customer's AMOP ids (null until mapped on the customer); a carrier's
        # the tenant, as the legacy did.
        "SiteId": session.tenant_id if customer is None else (customer.amop_site_id or None),
        "ServiceProviderId": session.provider_id,
        "OptimizationType": session.optimization_type,
        "OptimizationFrom": "group",
        "BillingPeriodStartDate": period.start_date.isoformat(),
        "BillingPeriodEndDate": period.end_date.isoformat(),
        "DeviceCount": session.device_count,
        "TenantId": session.tenant_id,
        "Method": session.method,
        "ChargeType": session.charge_type,
        "SkipLowerCostCheck": not session.must_beat_current,
    }}
    if customer is not None:
        additional["data"].update({"CustomerId": customer.amop_customer_id or None, "CustomerName": customer.name,
                                   "CarrieroptCustomerId": customer.pk})
    if session.scope == "cross_provider":
        # Every account's session of a cross-provider optimization names the one AMOP started (the parent).
        additional["data"]["CrossProviderSessionGuid"] = str(session.parent.guid if session.parent_id else session.guid)
    data = {"data": {
        "path": PATHS[kind],
        "job_name": kind,
        "SessionId": session.pk,
        "OptimizationSessionGuid": str(session.guid),
        "ErrorMessage": error_message,
        "Progress": progress,
        "CustomerId": session.tenant_id if customer is None else (customer.amop_customer_id or None),
        "AdditionalJson": json.dumps(additional),
        "DeviceCount": session.device_count,
    }}
    if progress == 100:
        # The answer's coverage: SIMs without usage of the cycle were kept on their plans, not optimized.
        data["data"].update({
            "Status": session.status,
            "DeviceWithUsageCount": session.sims_with_usage,
            "NoUsageDeviceCount": session.no_usage_count,
            "NoUsageIccids": session.no_usage_iccids[:NO_USAGE_ICCIDS_IN_EVENT],
            "Warnings": session.warnings,
            "Results": results_summary(session),
        })
        if session.comparison:
            data["data"]["Results"]["Accounts"] = session.comparison
    return data


def results_summary(session: OptimizationSession) -> dict:
    """What AMOP shows of a completed session: the session's stored totals, money as decimal strings."""
    figures = session.figures
    return {
        "SIMs": session.device_count,
        "CurrentCost": money_out(session.current_cost),
        "OptimizedCost": money_out(session.optimized_cost),
        "Savings": money_out(figures.savings),
        "SavingsPercent": None if figures.savings_ratio is None else ratio_out(figures.savings_ratio * 100),
        "Changes": DeviceAssignment.objects.filter(run_id=session.run_id, changed=True).count(),
        "LowerBound": money_out(session.lower_bound),
        "Gap": ratio_out(figures.gap),
        "NoUsageCount": session.no_usage_count,
        "ReportUrl": (f"{settings.SITE_URL.rstrip('/')}/api/sessions/{session.guid}/report/"
                      if session.report_path else None),
    }


def _deliver_soon() -> None:
    if settings.AMOP_WEBHOOK_URL:
        enqueue_on_commit("sessions.tasks.deliver_events")


def event_record(*, session: OptimizationSession, kind: str = EventKind.PROGRESS, progress: int | None = None,
                 error_message: str = "") -> ProgressEvent:
    """Append an event to a session's stream; must run inside the transaction of the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("event_record must run inside the transaction of the state change it reports")
    # The session row lock orders concurrent writers, so sequences never collide.
    OptimizationSession.objects.select_for_update().filter(pk=session.pk).values_list("pk").get()
    last = ProgressEvent.objects.filter(session=session).aggregate(m=Max("sequence"))["m"] or 0
    event = ProgressEvent.objects.create(
        session=session, provider_id=session.provider_id, sequence=last + 1, kind=kind, progress=progress,
        error_message=error_message, device_count=session.device_count,
        payload=_session_payload(session, kind, progress, error_message),
    )
    event.payload["data"].update({"EventId": str(event.event_id), "Sequence": event.sequence})
    ProgressEvent.objects.filter(pk=event.pk).update(payload=event.payload)
    _deliver_soon()
    return event


def sync_notification_record(*, provider: ServiceProvider) -> ProgressEvent:
    """The daily-sync notice AMOP expects after every completed device sync."""
    ServiceProvider.objects.select_for_update().filter(pk=provider.pk).values_list("pk").get()
    last = ProgressEvent.objects.filter(session=None, provider=provider).aggregate(m=Max("sequence"))["m"] or 0
    event = ProgressEvent.objects.create(
        session=None, provider=provider, sequence=last + 1, kind=EventKind.SYNC,
        payload={"data": {"path": PATHS[EventKind.SYNC], "key_name": SYNC_KEYS.get(provider.integration, "devices"),
                          "tenant_id": provider.tenant_id, "tenant_name": provider.tenant.name}},
    )
    event.payload["data"].update({"EventId": str(event.event_id), "Sequence": event.sequence})
    ProgressEvent.objects.filter(pk=event.pk).update(payload=event.payload)
    _deliver_soon()
    return event
