"""The engine's input and output types: rate plan catalogue, billing, problem, solution, and their validation errors."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .figures import CostFigures

CHARGE_TYPES = ("both", "rate", "overage")


class CatalogueError(ValueError):
    """A rate plan that cannot be priced (names the plan and the field)."""

    def __init__(self, *, plan_id: str, field: str, message: str):
        self.plan_id = plan_id
        self.field = field
        self.message = message
        super().__init__(f"rate plan {plan_id!r}: {field}: {message}")


class ProblemError(ValueError):
    """Arrays handed to the engine that do not describe a valid problem."""


def _plain(x) -> str:
    """A number as a person writes it (numpy scalars print as np.float64(...) otherwise)."""
    return repr(x.item()) if isinstance(x, np.generic) else repr(x)


def _array(value, dtype, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
    if shape is not None and arr.shape != shape:
        raise ProblemError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Rate plans as parallel arrays, one entry per plan (the index is the plan index everywhere in the engine)."""

    plan_ids: tuple[str, ...]
    monthly_cost: np.ndarray
    included_mb: np.ndarray
    overage_rate: np.ndarray
    overage_block_mb: np.ndarray
    fee_per_sim: np.ndarray
    pooled: np.ndarray

    def __post_init__(self):
        ids = tuple(str(p) for p in self.plan_ids)
        object.__setattr__(self, "plan_ids", ids)
        n = len(ids)
        for name in ("monthly_cost", "included_mb", "overage_rate", "overage_block_mb", "fee_per_sim"):
            object.__setattr__(self, name, _array(getattr(self, name), np.float64, name, (n,)))
        object.__setattr__(self, "pooled", _array(self.pooled, bool, "pooled", (n,)))
        if len(set(ids)) != n:
            dup = next(p for p in ids if ids.count(p) > 1)
            raise CatalogueError(plan_id=dup, field="id", message="appears more than once in the catalogue")

    def __len__(self) -> int:
        return len(self.plan_ids)

    def validate(self, plans=None) -> None:
        """Raise CatalogueError for the first plan (of `plans`, default all) that cannot be priced."""
        for i in range(len(self.plan_ids)) if plans is None else sorted(int(p) for p in plans):
            pid = self.plan_ids[i]
            for name in ("monthly_cost", "included_mb", "overage_rate", "overage_block_mb", "fee_per_sim"):
                v = float(getattr(self, name)[i])
                if not np.isfinite(v):
                    raise CatalogueError(plan_id=pid, field=name, message=f"must be a finite number, got {v!r}")
            # The legacy run stopped on these two; a zero block or rate makes overage undefined or free.
            if self.overage_rate[i] <= 0:
                raise CatalogueError(plan_id=pid, field="overage_rate", message=f"must be > 0, got {float(self.overage_rate[i])!r}")
            if self.overage_block_mb[i] <= 0:
                raise CatalogueError(
                    plan_id=pid, field="overage_block_mb", message=f"must be > 0, got {float(self.overage_block_mb[i])!r}"
                )
            for name in ("monthly_cost", "included_mb", "fee_per_sim"):
                v = float(getattr(self, name)[i])
                if v < 0:
                    raise CatalogueError(plan_id=pid, field=name, message=f"must not be negative, got {v!r}")

    def index(self, plan_id: str) -> int:
        return self.plan_ids.index(plan_id)


@dataclass(frozen=True)
class Billing:
    """Billing block of the problem; proration scales recurring charge and allowance, never fees."""

    days_in_cycle: int = 30
    days_remaining: int = 30
    prorate: bool = False

    def __post_init__(self):
        if int(self.days_in_cycle) <= 0:
            raise ProblemError(f"days_in_cycle must be > 0, got {_plain(self.days_in_cycle)}")
        if not 0 <= int(self.days_remaining) <= int(self.days_in_cycle):
            raise ProblemError(
                f"days_remaining must be between 0 and days_in_cycle ({_plain(self.days_in_cycle)}), got {_plain(self.days_remaining)}"
            )

    @property
    def factor(self) -> float:
        return self.days_remaining / self.days_in_cycle if self.prorate else 1.0


@dataclass(frozen=True, eq=False)
class Problem:
    """SIMs (usage, group, current plan) plus the catalogue and which plans each group may use.

    factor and movable are optional per-SIM arrays (shared/spec/cost-model.md, "Optional columns"): a SIM's
    recurring charge and allowance scale by its factor; a SIM that is not movable keeps its current plan,
    even one its group does not allow, and is priced there.
    """

    catalogue: Catalogue
    usage_mb: np.ndarray
    group: np.ndarray
    allowed: np.ndarray
    billing: Billing = field(default_factory=Billing)
    charge_type: str = "both"
    group_names: tuple[str, ...] | None = None
    current_plan: np.ndarray | None = None
    comm_plan: np.ndarray | None = None
    # Per-SIM proration factor f_i in [0, 1] (None: every SIM has billing.factor).
    factor: np.ndarray | None = None
    # Per-SIM: False keeps the SIM on its current plan, which it then must have (None: every SIM may move).
    movable: np.ndarray | None = None
    # Per-SIM pool key: SIMs on one pooled plan with one key share a pool whatever their group (None: the
    # SIM's group is its pool scope).  Stored renumbered 0..k-1 (only equality of keys means anything).
    pool: np.ndarray | None = None

    def __post_init__(self):
        usage = _array(self.usage_mb, np.float64, "usage_mb")
        if usage.ndim != 1:
            raise ProblemError(f"usage_mb must be one-dimensional, got shape {usage.shape}")
        n = usage.shape[0]
        if n and not np.all(np.isfinite(usage)):
            raise ProblemError(f"usage_mb must be finite; SIM {int(np.argmin(np.isfinite(usage)))} is not")
        if n and usage.min() < 0:
            raise ProblemError(f"usage_mb must not be negative; SIM {int(np.argmin(usage))} has {float(usage.min())!r}")
        group = _array(self.group, np.int32, "group", (n,))
        allowed = _array(self.allowed, bool, "allowed")
        if allowed.ndim != 2 or allowed.shape[1] != len(self.catalogue):
            raise ProblemError(f"allowed must have shape (groups, {len(self.catalogue)}), got {allowed.shape}")
        g = allowed.shape[0]
        if n and (group.min() < 0 or group.max() >= g):
            raise ProblemError(f"group values must lie in [0, {g}), got range [{int(group.min())}, {int(group.max())}]")
        if self.charge_type not in CHARGE_TYPES:
            raise ProblemError(f"charge_type must be one of {CHARGE_TYPES}, got {self.charge_type!r}")
        if self.group_names is not None:
            names = tuple(str(x) for x in self.group_names)
            if len(names) != g:
                raise ProblemError(f"group_names has {len(names)} names for {g} groups")
            object.__setattr__(self, "group_names", names)
        p = len(self.catalogue)
        if self.current_plan is None:
            current = np.full(n, -1, dtype=np.int32)
        else:
            current = _array(self.current_plan, np.int32, "current_plan", (n,))
            if n and (current.min() < -1 or current.max() >= p):
                raise ProblemError(f"current_plan values must lie in [-1, {p}), got [{int(current.min())}, {int(current.max())}]")
        comm = None
        if self.comm_plan is not None:
            comm = _array(self.comm_plan, np.int32, "comm_plan", (n,))
            if n and comm.min() < 0:
                raise ProblemError("comm_plan values must not be negative")
        factor = None
        if self.factor is not None:
            factor = _array(self.factor, np.float64, "factor", (n,))
            bad = ~(np.isfinite(factor) & (factor >= 0) & (factor <= 1))
            if bad.any():
                i = int(np.argmax(bad))
                raise ProblemError(f"factor must lie in [0, 1]; SIM {i} has {float(factor[i])!r}")
        movable = None
        if self.movable is not None:
            movable = _array(self.movable, bool, "movable", (n,))
            homeless = ~movable & (current < 0)
            if homeless.any():
                i = int(np.argmax(homeless))
                raise ProblemError(f"SIM {i} is not movable but has no current plan (a SIM that keeps its plan needs one)")
        # Only plans the problem can use or price must be valid: a catalogue may carry plans no group allows.
        used = np.flatnonzero(allowed.any(axis=0) | np.isin(np.arange(p), current))
        self.catalogue.validate(used)
        object.__setattr__(self, "usage_mb", usage)
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "current_plan", current)
        object.__setattr__(self, "comm_plan", comm)
        pool = None
        if self.pool is not None:
            raw = np.asarray(self.pool)
            if raw.shape != (n,):
                raise ProblemError(f"pool must have shape ({n},), got {raw.shape}")
            if raw.dtype.kind not in "iu":
                raise ProblemError(f"pool keys must be integers, got {raw.dtype}")
            pool = np.unique(raw, return_inverse=True)[1].astype(np.int32).reshape(n)
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "movable", movable)
        object.__setattr__(self, "pool", pool)

    @property
    def factors(self) -> np.ndarray:
        """f_i per SIM: the given factors, or billing.factor for every SIM."""
        return self.factor if self.factor is not None else np.full(self.n_sims, self.billing.factor)

    @property
    def movable_mask(self) -> np.ndarray:
        """True per SIM that may change plan."""
        return self.movable if self.movable is not None else np.ones(self.n_sims, dtype=bool)

    @property
    def n_sims(self) -> int:
        return int(self.usage_mb.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.allowed.shape[0])

    @property
    def n_plans(self) -> int:
        return len(self.catalogue)

    def group_name(self, g: int) -> str:
        return self.group_names[g] if self.group_names is not None else f"group-{g}"


@dataclass(frozen=True, eq=False)
class Solution:
    """An assignment with its price and, for the certified method, a proven lower bound per group.

    assignment holds a plan index per SIM; -1 only for SIMs of a skipped group whose current plan is unknown.
    winning_strategy/winning_sequence describe, per group, which method or legacy strategy produced the answer.
    """

    assignment: np.ndarray
    total_cost: float
    lower_bound: float | None
    group_cost: np.ndarray
    group_bound: np.ndarray | None
    method: str
    seconds: float
    skipped_groups: tuple[int, ...] = ()
    winning_strategy: tuple[str, ...] = ()
    winning_sequence: tuple[tuple[str, ...] | None, ...] = ()
    notes: tuple[str, ...] = ()
    # SIMs whose assigned plan differs from their current plan (None when not counted).
    changes: int | None = None
    # The bound's multiplier per pool scope (group, or pool key when pools span groups) and plan, NaN where
    # none (certified only): 0 <= lambda <= overage rate / block, the price of one MB above a pool's allowance.
    multipliers: np.ndarray | None = None
    # The change budget this answer keeps to (None: no budget).
    max_changes: int | None = None

    @property
    def gap(self) -> float | None:
        """(total - bound) / bound, the fraction by which the answer could at most be improved."""
        return CostFigures(optimized=self.total_cost, bound=self.lower_bound).gap
