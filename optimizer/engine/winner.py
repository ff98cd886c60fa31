"""Which candidate assignment wins a group: the cheapest, current plans first, so a tie keeps SIMs where they are."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Candidate:
    """One assignment of a group's SIMs (plan index per SIM, all in the same SIM order) and who made it.

    ref is the caller's handle on where it came from (e.g. a stored result's id); the engine never reads it.
    """

    assignment: np.ndarray
    method: str
    strategy: str
    sequence: tuple[str, ...] | None = None
    ref: object = None


@dataclass(frozen=True, eq=False)
class Winner:
    candidate: Candidate
    cost: float
    # Price of each of the caller's candidates, in the order given (current plans not included).
    costs: tuple[float, ...]
    # Price of the current plans when they competed, else None.
    current_cost: float | None
    # The current plans won: no SIM changes plan.
    kept_current: bool


def current_plans_compete(current_plan: np.ndarray, allowed_plans: np.ndarray) -> bool:
    """Current plans are an answer only when every SIM's is known and allowed (-1, unknown, never is)."""
    return bool(np.all(np.isin(current_plan, allowed_plans)))


def choose_winner(
    candidates: Sequence[Candidate],
    *,
    current: Candidate,
    allowed_plans: np.ndarray,
    price: Callable[[np.ndarray], float],
    current_competes: bool | None = None,
) -> Winner:
    """The cheapest of the current plans (when they compete) and `candidates`, each priced by `price`.

    Ties go to the earlier: current plans first, so on a tie SIMs stay where they are; then the
    candidates in the order given.  current_competes overrides current_plans_compete(current, allowed_plans)
    (SIMs that cannot move keep a plan the group may not allow, and that must not rule the current plans out).
    """
    if current_competes is None:
        competes = current_plans_compete(current.assignment, allowed_plans)
    else:
        competes = bool(current_competes)
    field = [current, *candidates] if competes else list(candidates)
    if not field:
        raise ValueError("choose_winner needs at least one candidate")
    costs = [float(price(c.assignment)) for c in field]
    best = min(range(len(field)), key=costs.__getitem__)  # the first of the cheapest
    return Winner(candidate=field[best], cost=costs[best], costs=tuple(costs[1:] if competes else costs),
                  current_cost=costs[0] if competes else None, kept_current=competes and best == 0)
