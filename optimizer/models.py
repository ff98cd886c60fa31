"""The answer: the optimization run, its communication groups, work items, results and per-SIM assignments."""
from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from carrieropt.money import MONEY
from carrieropt.options import ChargeType, Method  # noqa: F401 — re-exported: the run's options
from optimizer.engine.figures import CostFigures


class RunStatus(models.TextChoices):
    """The legacy system's instance statuses, kept because AMOP and operators know them."""

    NOT_STARTED = "NotStarted", "Not started"
    COMM_GROUP_SETUP = "CommGroupSetup", "Communication group setup"
    RUNNING_PERMUTATIONS = "RunningPermutations", "Running permutations"
    CLEANING_UP = "CleaningUp", "Cleaning up"
    COMPLETE_WITH_SUCCESS = "CompleteWithSuccess", "Complete with success"
    COMPLETE_WITH_ERRORS = "CompleteWithErrors", "Complete with errors"


RUN_ENDED = (RunStatus.COMPLETE_WITH_SUCCESS, RunStatus.COMPLETE_WITH_ERRORS)


class OptimizationRun(models.Model):
    """One optimization of an account's SIMs for one billing period (legacy: instance).

    What runs it (a session, a command) points down at it; the run knows nothing above itself.
    """

    provider = models.ForeignKey("rateplans.ServiceProvider", on_delete=models.CASCADE, related_name="optimization_runs")
    billing_period = models.ForeignKey("rateplans.BillingPeriod", on_delete=models.PROTECT, related_name="optimization_runs")
    method = models.CharField(max_length=20, choices=Method.choices, default=Method.CERTIFIED)
    charge_type = models.CharField(max_length=10, choices=ChargeType.choices, default=ChargeType.BOTH)
    must_beat_current = models.BooleanField(
        default=False, help_text="A group whose optimized cost is not below its current cost keeps its current plans "
                                 "(legacy SkipLowerCostCheck off).")
    # A customer optimization: only this customer's SIMs of the account (empty: every SIM of the account).
    customer = models.ForeignKey("devices.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="optimization_runs")
    status = models.CharField(max_length=30, choices=RunStatus.choices, default=RunStatus.NOT_STARTED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    frontier = models.JSONField(
        default=dict, blank=True,
        help_text="Savings versus changes (written by finalize): {points: [{max_changes, changes, total_cost, "
                  "lower_bound}], forced, unconstrained_changes, seconds}. A budget's answer makes the moves of "
                  "change_rank below its point's changes.")
    # The workbench's sums of the run's rows (optimizer.assignments.run_sums), each with what it was computed
    # from: the rows never change once the run has finished, and at a million SIMs each pass over them costs.
    sums = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["-pk"]

    def __str__(self):
        return f"Run {self.pk} ({self.method}, {self.status})"

    def frontier_point(self, max_changes: int | None) -> dict | None:
        """The stored point of this budget (None: no budget, or not a point of the frontier)."""
        if max_changes is None:
            return None
        for point in (self.frontier or {}).get("points", []):
            if point["max_changes"] == max_changes:
                return point
        return None


class GroupStatus(models.TextChoices):
    READY = "ready", "Ready"
    OPTIMIZED = "optimized", "Optimized"
    KEPT_BASELINE = "kept_baseline", "Kept baseline (0 or 1 SIM)"
    SKIPPED_PLAN_LIMIT = "skipped_plan_limit", "Skipped: too many rate plans"
    SKIPPED_NO_PLANS = "skipped_no_plans", "Skipped: no rate plans"
    INVALID = "invalid", "Invalid catalogue"


class CommGroup(models.Model):
    """Communication plans allowing the same set of rate plans: one pool scope."""

    run = models.ForeignKey(OptimizationRun, on_delete=models.CASCADE, related_name="comm_groups")
    name = models.CharField(max_length=100)
    plan_key = models.CharField(max_length=2000, help_text="Sorted ids of the allowed rate plans (compared as a set).")
    communication_plans = models.ManyToManyField("rateplans.CommunicationPlan", related_name="+")
    rate_plans = models.ManyToManyField("rateplans.RatePlan", related_name="+")
    status = models.CharField(max_length=30, choices=GroupStatus.choices, default=GroupStatus.READY)
    device_count = models.PositiveIntegerField(default=0)
    current_cost = models.DecimalField(**MONEY, null=True, blank=True)
    baseline_cost = models.DecimalField(**MONEY, null=True, blank=True)
    optimized_cost = models.DecimalField(**MONEY, null=True, blank=True)
    lower_bound = models.DecimalField(**MONEY, null=True, blank=True)
    winning_method = models.CharField(max_length=20, blank=True)
    winning_strategy = models.CharField(max_length=500, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "plan_key"], name="commgroup_unique_plans_per_run")]

    def __str__(self):
        return self.name

    @property
    def figures(self) -> CostFigures:
        """Savings, savings ratio and gap of the group's costs."""
        return CostFigures(self.current_cost, self.optimized_cost, self.lower_bound)


class QueueStatus(models.TextChoices):
    NOT_STARTED = "NotStarted", "Not started"
    RUNNING = "RunningPermutations", "Running"
    SUCCESS = "CompleteWithSuccess", "Complete with success"
    ERRORS = "CompleteWithErrors", "Complete with errors"


QUEUE_ENDED = (QueueStatus.SUCCESS, QueueStatus.ERRORS)


class OptimizationQueue(models.Model):
    """A work item: one method over one group (legacy: a batch of rate pool sequences)."""

    run = models.ForeignKey(OptimizationRun, on_delete=models.CASCADE, related_name="queues")
    comm_group = models.ForeignKey(CommGroup, on_delete=models.CASCADE, related_name="queues")
    method = models.CharField(max_length=20, choices=Method.choices)
    sequences = models.JSONField(default=list, blank=True, help_text="Legacy: rate pool sequences (plan ids) of this batch.")
    scope = models.JSONField(
        default=list, blank=True,
        help_text="Certified: the groups (ids, comm_group first) solved together because their SIMs share pools "
                  "(the account pools per customer or account-wide); empty: comm_group alone.")
    status = models.CharField(max_length=30, choices=QueueStatus.choices, default=QueueStatus.NOT_STARTED)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["lease_expires_at"], condition=Q(status="RunningPermutations"), name="queue_running_lease"),
        ]

    def __str__(self):
        return f"Work item {self.pk} ({self.method}, {self.status})"


class OptimizationResult(models.Model):
    """The best assignment one work item found for its group; non-winners are deleted at finalize."""

    queue = models.OneToOneField(OptimizationQueue, on_delete=models.CASCADE, related_name="result")
    comm_group = models.ForeignKey(CommGroup, on_delete=models.CASCADE, related_name="results")
    method = models.CharField(max_length=20, choices=Method.choices)
    cost = models.DecimalField(**MONEY)
    lower_bound = models.DecimalField(**MONEY, null=True, blank=True)
    strategy = models.CharField(max_length=500, blank=True)
    # Fingerprint of the SIMs, usage and current plans the result was computed on: finalize
    # uses a result (and its bound) only for exactly that data.
    snapshot = models.CharField(max_length=64, blank=True)
    # Plan index per SIM of the group (int32 little-endian), in the group's device order.
    assignment = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"Result of work item {self.queue_id}: {self.cost}"


class KeptReason(models.TextChoices):
    """Why a SIM was not free to move: it stays on its current plan."""

    NO_USAGE = "no_usage", "No usage data (cost: fixed charge only)"
    PINNED = "pinned", "Pinned by an operator"
    STOPPED = "stopped", "Deactivated or retired this cycle (billed, cannot move)"


class DeviceAssignment(models.Model):
    """A SIM's current and recommended rate plan, priced by the cost model.

    A SIM without usage of the cycle (kept_reason no_usage) has usage_mb NULL and keeps its plan,
    priced at the plan's fixed charge only: its real cost is not known."""

    # Up to a million rows a run, written once by finalize (COPY) in the run's transaction from ids it has just
    # read. The run, its groups and the plans are not checked again by database constraints (at commit
    # PostgreSQL checked every row of every such key: most of finalize's time); deleting a run or a plan still
    # cascades / is refused through Django's on_delete. The run needs no index of its own: every index below starts with it.
    run = models.ForeignKey(OptimizationRun, on_delete=models.CASCADE, related_name="assignments",
                            db_constraint=False, db_index=False)
    comm_group = models.ForeignKey(CommGroup, on_delete=models.CASCADE, related_name="assignments", db_constraint=False)
    # A SIM's rows are found (a SIM deleted) through the unique (device, run) index below: no index of its own.
    # No database constraint either (as the run, group and plan keys): checking a million keys cost finalize 4-5 s.
    # Django deletes a SIM's rows with it (on_delete); nothing deletes SIMs but an operator (a sync never does).
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="assignments", db_index=False,
                               db_constraint=False)
    # The SIM's customer when finalize read it, stored on the row: filtering a million SIMs by customer through
    # devices_device joined every row of the run (the index below reads only the customer's).
    customer = models.ForeignKey("devices.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", db_constraint=False, db_index=False)
    iccid = models.CharField("ICCID", max_length=20)
    usage_mb = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True,
                                   help_text="Projected cycle usage; empty when the SIM has no usage of the cycle.")
    current_plan = models.ForeignKey("rateplans.RatePlan", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", db_constraint=False, db_index=False)
    recommended_plan = models.ForeignKey("rateplans.RatePlan", on_delete=models.PROTECT, related_name="+",
                                         db_constraint=False, db_index=False)
    current_cost = models.DecimalField(**MONEY, null=True, blank=True)
    recommended_cost = models.DecimalField(**MONEY)
    changed = models.BooleanField()
    kept_reason = models.CharField(max_length=20, choices=KeptReason.choices, blank=True, default="",
                                   help_text="Set when the SIM could not move and kept its current plan.")
    change_rank = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Position of this SIM's move in the frontier's order (a budget's answer makes the moves ranked "
                  "below its point's changes); empty when it does not change.")
    # Stored by the database, so the workbench sorts a million SIMs by saving through an index.
    saving = models.GeneratedField(expression=F("current_cost") - F("recommended_cost"),
                                   output_field=models.DecimalField(**MONEY, null=True), db_persist=True)

    class Meta:
        ordering = ["run", "iccid"]
        # Every index is paid for on each of a million rows finalize writes (924k rows: COPY 36 s with the seven
        # indexes before, 27.5 s with these six, on a loaded machine).
        constraints = [models.UniqueConstraint(fields=["device", "run"], name="assignment_unique_device_per_run")]
        indexes = [
            # The changes of a run (counts, the push): only the changed rows are in it.
            models.Index(fields=["run"], condition=Q(changed=True), name="assignment_run_changed"),
            # The workbench's SIM list: a page in ICCID order, or by saving, of one run. On PostgreSQL this and the
            # saving index INCLUDE (changed) (migration 0017): a deep page of the changes is an index-only scan.
            models.Index(fields=["run", "iccid"], name="assignment_run_iccid"),
            # One customer's SIMs of a run, in ICCID order.
            models.Index(fields=["run", "customer", "iccid"], name="assignment_run_customer_iccid"),
            # One move of the migration matrix (from plan, to plan), in ICCID order: a rare move was a scan of the
            # whole run for its 50 rows.
            models.Index(fields=["run", "current_plan", "recommended_plan", "iccid"], name="assignment_run_move_iccid"),
            # And (run, saving DESC NULLS LAST, iccid), "largest saving first": made by migration 0004 for each
            # database (SQLite has no NULLS LAST in an index; its NULLs sort last in DESC anyway).
        ]

    def __str__(self):
        return f"{self.iccid}: {self.current_plan_id} -> {self.recommended_plan_id}"


class RunRealized(models.Model):
    """What a run's recommendation actually saved, once its cycle ended and the carrier reported final usage.

    The cycle priced by the cost model with each SIM's final usage, twice: on the plans the SIMs really had at
    the cycle's end (after) and on the plans they had when the run read them (before). Only SIMs with final usage
    and a known plan both times are priced; the others are counted and listed as missing, never priced as 0.
    Projection error: the run's projected usage against the final usage of the same SIMs. Computed by
    optimizer.realized.realized_compute; computed again after every final usage sync of the cycle."""

    run = models.OneToOneField(OptimizationRun, on_delete=models.CASCADE, related_name="realized")
    computed_at = models.DateTimeField(auto_now=True)
    final_synced_at = models.DateTimeField(null=True, blank=True, help_text="The latest final usage read it used.")
    sims = models.PositiveIntegerField(default=0, help_text="SIMs of the run.")
    priced = models.PositiveIntegerField(default=0, help_text="SIMs priced with final usage.")
    missing = models.PositiveIntegerField(default=0, help_text="SIMs without final usage or without a known plan.")
    missing_sims = models.JSONField(default=list, blank=True, help_text="[{iccid, reason}], the first 1,000.")
    cost_before = models.DecimalField(**MONEY, help_text="Final usage on the plans at the time of the run.")
    cost_after = models.DecimalField(**MONEY, help_text="Final usage on the plans at the cycle's end.")
    projected_savings = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="What the run projected its recommendation saves, for the same SIMs.")
    projected_mb = models.DecimalField(max_digits=18, decimal_places=3, default=0,
                                       help_text="Projected usage of the priced SIMs the run had usage for.")
    final_mb = models.DecimalField(max_digits=18, decimal_places=3, default=0,
                                   help_text="Final usage of the same SIMs.")
    compared = models.PositiveIntegerField(default=0, help_text="SIMs in projected_mb / final_mb.")
    abs_error_mb = models.DecimalField(max_digits=18, decimal_places=3, default=0,
                                       help_text="Sum over those SIMs of |projected - final|.")
    recommended_changes = models.PositiveIntegerField(default=0)
    changes_made = models.PositiveIntegerField(default=0, help_text="SIMs on another plan at the cycle's end than at the run.")
    changes_followed = models.PositiveIntegerField(default=0, help_text="Recommended changes in place at the cycle's end.")
    groups = models.JSONField(default=list, blank=True, help_text="The same figures per communication group.")

    class Meta:
        verbose_name_plural = "realized savings"

    def __str__(self):
        return f"Realized savings of run {self.run_id}"

    @property
    def figures(self) -> CostFigures:
        """savings = cost_before - cost_after: what the plans at the cycle's end saved on the final usage."""
        return CostFigures(self.cost_before, self.cost_after)

    @property
    def projection_error(self):
        """(projected - final) / final over the compared SIMs (None without final usage)."""
        return (self.projected_mb - self.final_mb) / self.final_mb if self.final_mb else None
