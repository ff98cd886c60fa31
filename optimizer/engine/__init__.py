"""Pure numpy optimizer engine (no Django): cost model, legacy strategies, certified solver, offline file I/O."""
from .budget import Frontier, FrontierPoint, frontier, never_ranked, solve_budgeted
from .certified import lagrangian_bound, solve_certified
from .figures import CostFigures
from .files import FileFormatError
from .legacy import (
    LEGACY_MAX_PLANS,
    LEGACY_MAX_SEQUENCES,
    NO_GROUPING,
    LegacyBest,
    baseline_assignment,
    legacy_evaluate_sequences,
    rate_pool_sequences,
    solve_legacy,
)
from .model import Billing, Catalogue, CatalogueError, Problem, ProblemError, Solution
from .pergroup import Group, GroupAnswer, group_skip_reason, solve_per_group
from .pricing import Pricing, plan_terms, price, sim_costs
from .winner import Candidate, Winner, choose_winner, current_plans_compete

__all__ = [
    "LEGACY_MAX_PLANS",
    "LEGACY_MAX_SEQUENCES",
    "NO_GROUPING",
    "Billing",
    "Candidate",
    "Catalogue",
    "CatalogueError",
    "CostFigures",
    "FileFormatError",
    "Frontier",
    "FrontierPoint",
    "Group",
    "GroupAnswer",
    "LegacyBest",
    "Pricing",
    "Problem",
    "ProblemError",
    "Solution",
    "Winner",
    "baseline_assignment",
    "choose_winner",
    "current_plans_compete",
    "frontier",
    "never_ranked",
    "group_skip_reason",
    "lagrangian_bound",
    "legacy_evaluate_sequences",
    "plan_terms",
    "price",
    "rate_pool_sequences",
    "sim_costs",
    "solve_budgeted",
    "solve_certified",
    "solve_legacy",
    "solve_per_group",
]
