"""The models' figures and every screen that shows them agree: API, dashboard context, report, command."""
from decimal import Decimal as D

from optimizer.models import CommGroup
from optimizer.serializers import CommGroupOut
from sessions.management.commands.optimize import _summary
from sessions.models import OptimizationSession
from sessions.serializers import SessionOut


def _session(current, optimized, bound):
    return OptimizationSession(current_cost=current, optimized_cost=optimized, lower_bound=bound, device_count=3)


def test_session_figures_are_its_savings_and_gap():
    s = _session(D("120.0000"), D("100.0000"), D("80.0000"))
    assert s.figures.savings == s.savings == D("20.0000")
    assert s.figures.gap == s.gap == D("0.25")
    assert s.figures.savings_ratio == D(20) / D(120)


def test_group_figures():
    g = CommGroup(current_cost=D("50.0000"), optimized_cost=D("40.0000"), lower_bound=D("0.0000"))
    assert g.figures.savings == D("10.0000") and g.figures.gap is None
    out = CommGroupOut()
    assert out.get_savings(g) == "10.0000" and out.get_gap(g) is None


def test_session_api_figures_zero_current_cost_and_zero_bound():
    out = SessionOut()
    s = _session(D("0.0000"), D("0.0000"), D("0.0000"))
    assert out.get_savings(s) == "0.0000"
    assert out.get_savings_percent(s) is None and out.get_gap(s) is None
    s = _session(D("200.0000"), D("150.0000"), D("100.0000"))
    assert out.get_savings_percent(s) == "25.000000" and out.get_gap(s) == "0.500000"
    s = _session(None, D("150.0000"), None)
    assert out.get_savings(s) is None and out.get_savings_percent(s) is None and out.get_gap(s) is None


def test_command_summary_uses_the_same_figures():
    text = _summary(_session(D("200.0000"), D("150.0000"), D("100.0000")))
    assert "savings" in text and "50.00" in text and "(25.0 %)" in text and "within 50.000 %" in text
    # A zero bound has no gap: the line says so instead of failing.
    text = _summary(_session(D("0.0000"), D("0.0000"), D("0.0000")))
    assert "(0.0 %)" in text and "within" not in text
