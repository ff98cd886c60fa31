"""E-mails of a push: why it was not started (No-Go), and its report once it ended."""
from __future__ import annotations

from django.core.mail import send_mail

from pushes.counts import push_counts
from pushes.models import ChangeStatus, PushStatus, RatePlanPush
from rateplans.alerts import alert_raise
from rateplans.models import AlertKind

NO_GO_SUBJECT = "Rate plan update not started: it could not finish before the billing period ends"
REPORT_SUBJECT = "Rate plan update finished for {account}: {applied} applied, {attention} need attention"
REPORT_LINES = 500


def _title(push: RatePlanPush) -> str:
    return f"Rate plan update #{push.pk}" + (f" for optimization session {push.session_id}" if push.session_id else "")


def no_go_email(push: RatePlanPush) -> None:
    provider = push.provider
    body = (f"Carrier account: {provider.name} ({provider.integration})\n"
            + _title(push) + (f", applied by {push.applied_by}" if push.applied_by else "")
            + f"\n\n{push.decision_reason}\n\nNo SIM was changed on the carrier: every SIM stays on its current "
            f"rate plan for this billing period.\n")
    send_mail(NO_GO_SUBJECT, body, None, provider.alert_recipients, fail_silently=True)


def report_email(push: RatePlanPush) -> None:
    """What was applied, and every SIM that needs a look: skipped, refused, failed or not showing the new plan."""
    counts = push_counts(push_id=push.pk)
    changes = push.changes.order_by("iccid")
    sections = [
        ("Skipped: the SIM's plan changed on the carrier after the optimization", changes.filter(status=ChangeStatus.DISCREPANCY)),
        ("Refused by the carrier", changes.filter(status=ChangeStatus.REJECTED)),
        ("Failed", changes.filter(status=ChangeStatus.FAILED)),
        ("Not sent: the billing period would end before they could be sent and verified",
         changes.filter(status=ChangeStatus.NOT_SENT)),
        ("Applied, but the carrier does not show the new plan (read twice)",
         changes.filter(status=ChangeStatus.APPLIED, verified=False)),
        ("Applied, but could not be read back", changes.filter(status=ChangeStatus.APPLIED, verified__isnull=True)),
    ]
    attention = counts.total - counts.verified - counts.not_sent
    lines = [f"Carrier account: {push.provider.name} ({push.provider.integration})",
             _title(push) + f": {push.get_status_display()}.",
             f"Applied by: {push.applied_by}." if push.applied_by else "", push.error,
             f"Stopped early: {push.stopped_early} {counts.not_sent:,} changes were not sent; those SIMs stay on "
             f"their current plans this billing period." if push.stopped_early else "",
             f"{counts.total:,} changes: {counts.applied:,} applied ({counts.verified:,} verified on the carrier), "
             f"{counts.discrepancy:,} skipped as discrepancies, {counts.rejected:,} refused, {counts.failed:,} failed"
             + (f", {counts.not_sent:,} not sent (billing period ending)." if counts.not_sent else "."),
             f"Measured rate: {push.measured_rate:.1f} SIMs/min." if push.measured_rate else ""]
    for title, rows in sections:
        total = rows.count()
        if not total:
            continue
        lines += ["", f"{title}: {total:,}"]
        for change in rows[:REPORT_LINES]:
            shown = change.verified_plan or change.carrier_plan
            lines.append(f"  {change.iccid}  {change.from_plan_code} -> {change.to_plan_code}"
                         + (f"  carrier shows {shown}" if shown and shown != change.to_plan_code else "")
                         + (f"  {change.error}" if change.error else ""))
        if total > REPORT_LINES:
            lines.append(f"  … and {total - REPORT_LINES:,} more (see the admin or the API)")
    subject = REPORT_SUBJECT.format(account=push.provider.name, applied=counts.applied, attention=attention)
    if counts.not_sent:
        subject += f", {counts.not_sent:,} not sent (billing period ending)"
    body = "\n".join(line for line in lines if line)
    if push.status == PushStatus.FAILED or push.stopped_early or counts.rejected:
        # A push that stopped or had SIMs refused is an incident: its report is the alert (one e-mail, recorded).
        alert_raise(provider=push.provider, kind=AlertKind.PUSH_ATTENTION, key=f"push:{push.pk}", subject=subject,
                    body=body)
    else:
        send_mail(subject, body, None, push.provider.alert_recipients, fail_silently=True)
