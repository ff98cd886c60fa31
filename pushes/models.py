"""The rate-plan push: a push to one carrier account, its batches (work items) and one change per SIM."""
from __future__ import annotations

from django.db import models
from django.db.models import Q


class PushStatus(models.TextChoices):
    RUNNING = "running", "Sending changes"
    VERIFYING = "verifying", "Verifying"
    SUCCEEDED = "succeeded", "Succeeded"
    FINISHED_WITH_ERRORS = "finished_with_errors", "Finished, some SIMs need attention"
    FAILED = "failed", "Failed"
    NO_GO = "no_go", "Not started (No-Go)"


PUSH_ACTIVE_STATUSES = (PushStatus.RUNNING, PushStatus.VERIFYING)


class PushDecision(models.TextChoices):
    GO = "go", "Go"
    NO_GO = "no_go", "No-Go"


class RatePlanPush(models.Model):
    """One push of rate-plan changes to a carrier account, with its Go/No-Go decision and progress."""

    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="rate_plan_pushes")
    session = models.ForeignKey("optsessions.OptimizationSession", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="rate_plan_pushes")
    trigger = models.CharField(max_length=20, default="manual", help_text="auto, api, admin or command")
    applied_by = models.CharField(max_length=150, blank=True,
                                  help_text="The user who applied it, command, or automatic (pushes before this was recorded: blank).")
    status = models.CharField(max_length=30, choices=PushStatus.choices, default=PushStatus.RUNNING)
    decision = models.CharField(max_length=10, choices=PushDecision.choices)
    decision_reason = models.TextField(blank=True)
    period_ends_at = models.DateTimeField(help_text="When the billing period ends (midnight, account time zone).")
    minutes_left = models.FloatField(help_text="Minutes between the decision and the end of the billing period.")
    minutes_needed = models.FloatField(help_text="Every change and its verification read at the rate, in minutes.")
    expected = models.PositiveIntegerField(
        default=0, help_text="Changes the Go/No-Go expected to send before the period ends (all, or the batches that fit).")
    rate_per_minute = models.FloatField(help_text="SIMs per minute the decision assumed.")
    rate_source = models.CharField(max_length=200, blank=True)
    batch_size = models.PositiveIntegerField(default=250)
    total = models.PositiveIntegerField(default=0, help_text="Changes in this push.")
    # Refreshed from the change rows after every batch run; the API counts live.
    applied = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    discrepancies = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    not_sent = models.PositiveIntegerField(default=0, help_text="Not sent: the billing period would end first.")
    verify_mismatches = models.PositiveIntegerField(default=0)
    send_seconds = models.FloatField(default=0, help_text="Time spent sending, summed over batch runs.")
    measured_rate = models.FloatField(null=True, blank=True, help_text="SIMs per minute this push achieved.")
    tuning = models.JSONField(default=dict, blank=True,
                              help_text="Call timeouts, attempts and leases every worker of this push uses.")
    claimed_by = models.CharField(max_length=100, blank=True, help_text="Worker verifying the push.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    verify_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    stopped_early = models.TextField(
        blank=True, help_text="Why the push stopped before its last batch: the billing period would end first.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        # Tenant members see recommendations; only those given this may push them to the carrier.
        permissions = [("apply_recommendations", "Can push recommended rate plans to the carrier")]
        constraints = [
            # "One push at a time per account" lives in the database, so two triggers cannot both start one.
            models.UniqueConstraint(fields=["provider"], condition=Q(status__in=["running", "verifying"]),
                                    name="one_running_push_per_provider"),
            models.CheckConstraint(condition=~Q(status="no_go") | Q(decision="no_go"), name="push_no_go_has_decision"),
            models.CheckConstraint(condition=Q(batch_size__gte=1), name="push_batch_size_positive"),
        ]

    def __str__(self):
        return f"Push {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in PUSH_ACTIVE_STATUSES


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class RatePlanPushBatch(models.Model):
    """A work item of a push: up to batch_size changes, claimed by one worker with a compare-and-set UPDATE."""

    push = models.ForeignKey(RatePlanPush, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["push", "number"]
        constraints = [models.UniqueConstraint(fields=["push", "number"], name="push_batch_unique_number")]
        indexes = [
            # Serves exactly the watchdog's query: running batches whose lease ran out.
            models.Index(fields=["lease_expires_at"], condition=Q(status="running"), name="push_batch_running_lease"),
        ]

    def __str__(self):
        return f"Batch {self.number} of push {self.push_id} ({self.status})"


class ChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected by the carrier"
    DISCREPANCY = "discrepancy", "Skipped: plan changed on the carrier"
    FAILED = "failed", "Failed"
    NOT_SENT = "not_sent", "Not sent: billing period ending"


CHANGE_OPEN_STATUSES = (ChangeStatus.PENDING, ChangeStatus.SENDING)


class RatePlanChange(models.Model):
    """One SIM's move to its recommended plan, recorded before anything is sent, with its outcome."""

    push = models.ForeignKey(RatePlanPush, on_delete=models.CASCADE, related_name="changes")
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="rate_plan_changes")
    iccid = models.CharField("ICCID", max_length=20)
    from_plan = models.ForeignKey("rateplans.RatePlan", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    from_plan_code = models.CharField(max_length=120, blank=True, help_text="The plan the optimization saw.")
    to_plan = models.ForeignKey("rateplans.RatePlan", on_delete=models.PROTECT, related_name="+")
    to_plan_code = models.CharField(max_length=120)
    batch = models.PositiveIntegerField(help_text="Number of the push batch this change belongs to.")
    status = models.CharField(max_length=20, choices=ChangeStatus.choices, default=ChangeStatus.PENDING)
    # The fence: every write is a compare-and-set from the (status, attempts, sends) the writer last saw.
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker claimed this change.")
    sends = models.PositiveSmallIntegerField(default=0, help_text="PUTs recorded before being sent.")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="Last claim or PUT of this change.")
    carrier_plan = models.CharField(max_length=120, blank=True, help_text="The plan the carrier showed when last read.")
    error = models.TextField(blank=True, help_text="The carrier's answer when it refused, or why it failed.")
    finished_at = models.DateTimeField(null=True, blank=True)
    verified = models.BooleanField(null=True, blank=True, help_text="Verification read: the carrier shows the new plan.")
    verified_plan = models.CharField(max_length=120, blank=True)
    verify_reads = models.PositiveSmallIntegerField(default=0, help_text="Verification reads done (a mismatch is read twice).")

    class Meta:
        ordering = ["push", "batch", "iccid"]
        constraints = [
            models.UniqueConstraint(fields=["push", "device"], name="push_change_unique_device"),
            models.CheckConstraint(condition=~Q(from_plan_code=models.F("to_plan_code")), name="push_change_moves_plan"),
        ]
        indexes = [models.Index(fields=["push", "batch", "status"], name="push_change_batch_status")]

    def __str__(self):
        return f"{self.iccid}: {self.from_plan_code} -> {self.to_plan_code} ({self.status})"
