"""Pure numpy optimizer engine (no Django): cost model, legacy strategies, certified solver, offline file I/O."""
from .certified import lagrangian_bound, solve_certified
from .files import FileFormatError
from .legacy import (
    LEGACY_MAX_PLANS,
    LEGACY_MAX_SEQUENCES,
    LegacyBest,
    baseline_assignment,
    legacy_evaluate_sequences,
    rate_pool_sequences,
    solve_legacy,
)
from .model import Billing, Catalogue, CatalogueError, Problem, ProblemError, Solution
from .pricing import Pricing, plan_terms, price, sim_costs

__all__ = [
    "LEGACY_MAX_PLANS",
    "LEGACY_MAX_SEQUENCES",
    "Billing",
    "Catalogue",
    "CatalogueError",
    "FileFormatError",
    "LegacyBest",
    "Pricing",
    "Problem",
    "ProblemError",
    "Solution",
    "baseline_assignment",
    "lagrangian_bound",
    "legacy_evaluate_sequences",
    "plan_terms",
    "price",
    "rate_pool_sequences",
    "sim_costs",
    "solve_certified",
    "solve_legacy",
]
