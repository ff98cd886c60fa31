"""Sessions as AMOP sees them: the optimization session (pointing at its optimizer run) and the progress outbox."""
from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from carrieropt.money import MONEY
from optimizer.engine.figures import CostFigures
from optimizer.models import ChargeType, Method


class SessionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    # Complete, but the answer is not trustworthy enough to apply unattended (too few SIMs had usage).
    SUCCEEDED_WITH_WARNINGS = "succeeded_with_warnings", "Succeeded with warnings"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (SessionStatus.PENDING, SessionStatus.RUNNING)
# A session with results: its recommendations can be reviewed and applied by an operator.
COMPLETED_STATUSES = (SessionStatus.SUCCEEDED, SessionStatus.SUCCEEDED_WITH_WARNINGS)


class Stage(models.TextChoices):
    START = "start", "Start"
    SYNC = "sync", "Device and usage sync"
    GROUPING = "grouping", "Grouping and validation"
    QUEUEING = "queueing", "Rate pools and work items"
    OPTIMIZING = "optimizing", "Optimizing"
    FINALIZING = "finalizing", "Finalizing"
    COMPLETE = "complete", "Complete"


class Trigger(models.TextChoices):
    MANUAL = "manual", "Manual (command line)"
    SCHEDULED = "scheduled", "Scheduled"
    API = "api", "REST API"
    ADMIN = "admin", "Admin"
    DASHBOARD = "dashboard", "Dashboard"


class Scope(models.TextChoices):
    """What a session optimizes (legacy: the portal's optimization type)."""

    CARRIER = "carrier", "Carrier optimization (every SIM of the account)"
    CUSTOMER = "customer", "Customer optimization (one customer's SIMs on the account)"
    CROSS_PROVIDER = "cross_provider", "Cross-provider (one customer's SIMs on each of the tenant's accounts)"


# AMOP's OptimizationType of each scope.
OPTIMIZATION_TYPES = {Scope.CARRIER: "Carrier", Scope.CUSTOMER: "Customer", Scope.CROSS_PROVIDER: "CrossProvider"}


class OptimizationSession(models.Model):
    guid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey("carrieropt.Tenant", on_delete=models.CASCADE, related_name="sessions")
    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="sessions")
    billing_period = models.ForeignKey("rateplans.BillingPeriod", on_delete=models.PROTECT, related_name="sessions")
    # The optimizer's run of this session (legacy: its instance); the run never points back.
    run = models.OneToOneField("optimizer.OptimizationRun", on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=20, choices=Scope.choices, default=Scope.CARRIER)
    customer = models.ForeignKey("devices.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="sessions", help_text="The customer of a customer or cross-provider "
                                                                    "session (its run optimizes only its SIMs).")
    # A cross-provider session is the session of the customer's first account (lowest id); the session of each
    # other account it covers points at it. Each holds its own account's one-active slot.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children",
                               help_text="The cross-provider session this account's session is part of.")
    comparison = models.JSONField(
        default=dict, blank=True,
        help_text="Cross-provider (written when every account's session has ended): the accounts side by side "
                  "(sessions.crossprovider.comparison_build).")
    status = models.CharField(max_length=30, choices=SessionStatus.choices, default=SessionStatus.PENDING)
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.START)
    progress = models.PositiveSmallIntegerField(default=0)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    method = models.CharField(max_length=20, choices=Method.choices, default=Method.CERTIFIED)
    charge_type = models.CharField(max_length=10, choices=ChargeType.choices, default=ChargeType.BOTH,
                                   help_text="What the costs count: both, rate charge only or overage only.")
    must_beat_current = models.BooleanField(
        default=False, help_text="A group whose optimized cost is not below its current cost keeps its current plans "
                                 "(legacy SkipLowerCostCheck off).")
    sync_devices = models.BooleanField(default=True, help_text="Sync devices and usage from the carrier first.")
    max_changes = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Change budget: applying pushes the answer in which at most this many SIMs change plan (a point "
                  "of the frontier). Empty: every recommended change.")
    started_by = models.CharField(max_length=150, blank=True,
                                  help_text="The user who started it, or schedule / command (sessions before this was recorded: blank).")
    cancelled_by = models.CharField(max_length=150, blank=True, help_text="The user who cancelled it.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    stage_timings = models.JSONField(default=dict, blank=True, help_text="{stage: {started, finished, seconds}}")
    # A long stage (the carrier sync can take hours) is claimed by one worker, which
    # proves it is alive by the heartbeat; duplicates of its task leave it alone.
    stage_claimed_by = models.CharField(max_length=100, blank=True)
    stage_heartbeat_at = models.DateTimeField(null=True, blank=True)
    device_count = models.PositiveIntegerField(default=0)
    current_cost = models.DecimalField(**MONEY, null=True, blank=True)
    baseline_cost = models.DecimalField(**MONEY, null=True, blank=True)
    optimized_cost = models.DecimalField(**MONEY, null=True, blank=True)
    lower_bound = models.DecimalField(**MONEY, null=True, blank=True)
    # Usage coverage: SIMs priced with usage of the cycle, and those without any (kept on their plan).
    sims_with_usage = models.PositiveIntegerField(default=0)
    no_usage_count = models.PositiveIntegerField(default=0, help_text="Billable SIMs without usage of the cycle.")
    no_usage_iccids = models.JSONField(default=list, blank=True, help_text="ICCIDs of the SIMs without usage data.")
    warnings = models.TextField(blank=True, help_text="Why the session succeeded with warnings.")
    report_path = models.CharField(max_length=500, blank=True)  # the report's name in STORAGES["reports"]
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The rule "one running optimization per account" lives in the database,
            # so concurrent starts cannot both win.
            models.UniqueConstraint(fields=["provider"], condition=Q(status__in=["pending", "running"]),
                                    name="one_active_session_per_provider"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="session_progress_0_100"),
            # A customer scope names its customer; a carrier scope has none; only a cross-provider session has parts.
            models.CheckConstraint(condition=Q(scope="carrier", customer__isnull=True)
                                   | Q(~Q(scope="carrier"), customer__isnull=False),
                                   name="session_customer_iff_customer_scope"),
            models.CheckConstraint(condition=Q(parent__isnull=True) | Q(scope="cross_provider"),
                                   name="session_parent_only_cross_provider"),
        ]

    def __str__(self):
        return f"Session {self.pk} ({self.status})"

    @property
    def optimization_type(self) -> str:
        return OPTIMIZATION_TYPES[self.scope]

    @property
    def is_cross_provider_parent(self) -> bool:
        """The session AMOP started for a cross-provider optimization (the others are its accounts' parts)."""
        return self.scope == Scope.CROSS_PROVIDER and self.parent_id is None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_complete(self) -> bool:
        """Finished with results (with or without warnings)."""
        return self.status in COMPLETED_STATUSES

    @property
    def usage_coverage(self) -> float | None:
        """Share of the billable SIMs priced with usage of the cycle."""
        return self.sims_with_usage / self.device_count if self.device_count else None

    @property
    def figures(self) -> CostFigures:
        """Savings, savings ratio and gap of the session's totals."""
        return CostFigures(self.current_cost, self.optimized_cost, self.lower_bound)

    @property
    def savings(self):
        return self.figures.savings

    @property
    def gap(self):
        """Optimized cost above the proven lower bound, as a fraction of the bound."""
        return self.figures.gap


class EventKind(models.TextChoices):
    PROGRESS = "Progress", "Progress"
    ERROR = "ErrorMessage", "Error message"
    SYNC = "SyncNotification", "Daily sync notification"


class ProgressEvent(models.Model):
    """Outbox row: written in the transaction of the change it reports, delivered to AMOP later."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey(OptimizationSession, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="events")
    sequence = models.PositiveIntegerField(help_text="Order of events within a session (or a provider, for sync notices).")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    device_count = models.PositiveIntegerField(default=0)
    payload = models.JSONField(help_text="The AMOP body as it is sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Set after AMOP_WEBHOOK_MAX_ATTEMPTS failures: the sender skips it so the rest of the stream flows;
    # the admin's "re-send" clears it.
    dead_lettered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "sequence"], name="event_unique_sequence_per_session"),
        ]
        indexes = [
            # Serves exactly the sender's query: what is still to deliver.
            models.Index(fields=["id"], condition=Q(delivered_at__isnull=True), name="event_undelivered"),
        ]

    def __str__(self):
        return f"{self.kind} {self.progress if self.progress is not None else ''} ({self.event_id})"
