"""The figures derived from a cost before, a cost after and a proven bound: savings, savings ratio, gap."""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

Amount = Decimal | float


@dataclass(frozen=True)
class CostFigures:
    """current (cost on the current plans), optimized (cost of the answer), bound (proven lower bound).

    Every figure is None when an amount it needs is missing; a ratio is None when what it divides by is
    zero.  The amounts are all Decimal (money in models and the API) or all float (the engine), never
    mixed, and every figure comes out in the same type: Decimal in, Decimal out.
    """

    current: Amount | None = None
    optimized: Amount | None = None
    bound: Amount | None = None

    def __post_init__(self):
        given = [a for a in (self.current, self.optimized, self.bound) if a is not None]
        if any(isinstance(a, Decimal) for a in given) and not all(isinstance(a, Decimal) for a in given):
            raise TypeError(f"CostFigures amounts must be all Decimal or all float, got {[type(a).__name__ for a in given]}")

    @property
    def savings(self) -> Amount | None:
        """current - optimized."""
        if self.current is None or self.optimized is None:
            return None
        return self.current - self.optimized

    @property
    def savings_ratio(self) -> Amount | None:
        """savings / current, a fraction (None when the current cost is zero)."""
        savings = self.savings
        if savings is None or not self.current:
            return None
        return savings / self.current

    @property
    def gap(self) -> Amount | None:
        """(optimized - bound) / bound: the fraction by which the answer could at most be improved.

        None without a bound or with one that is not positive (nothing to measure against); never
        negative, since a cost below a proven bound can only be rounding.
        """
        if self.optimized is None or self.bound is None or not math.isfinite(self.bound) or self.bound <= 0:
            return None
        gap = (self.optimized - self.bound) / self.bound
        return max(gap, type(gap)(0))
