"""Layers (shared/design/architecture.md): dependencies point one way only,
config -> pushes -> sessions -> optimizer -> devices -> carriers -> rateplans -> carrieropt, neither by import nor
by foreign key; optimizer/ and devices/ do not even name sessions; optimizer/engine/ is plain Python and numpy."""
import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parents[1]
ENGINE_DIR = ROOT / "optimizer" / "engine"
# Highest first. An app that does not exist (yet) is simply not checked.
LAYERS = ["config", "pushes", "sessions", "optimizer", "devices", "carriers", "rateplans", "carrieropt"]
PRESENT = [app for app in LAYERS if (ROOT / app).is_dir()]
# Lower than sessions, so they must not name it: identifiers, and strings that are ORM lookups, model
# labels or dotted paths ("run__session", "optsessions.OptimizationSession", "sessions.tasks.x").
SESSION_FREE = ["optimizer", "devices"]
LOOKUP = re.compile(r"[A-Za-z_][\w.]*")

def _sources(app: str):
    """The app's Python modules, without migrations (they are history, written once)."""
    return sorted(p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.relative_to(ROOT).parts)


def _rank(name: str) -> int | None:
    top = name.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def _imports(path: Path):
    """(line, module) of every absolute import, at module level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize("app", PRESENT)
def test_no_module_imports_a_higher_app(app):
    rank = LAYERS.index(app)
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {module}"
             for path in _sources(app) for line, module in _imports(path)
             if (other := _rank(module)) is not None and other < rank]
    assert wrong == [], f"{app} sits below what these import"


def _session_names(path: Path):
    """(line, text) of NAME tokens and lookup-like string constants that mention session. Comments and
    docstrings may speak of sessions (they explain why code does not know them); code may not."""
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        text = token.string
        if token.type == tokenize.STRING:
            try:
                text = ast.literal_eval(text)
            except (ValueError, SyntaxError):  # f-strings: their names come as NAME tokens on 3.12+
                continue
            if not isinstance(text, str) or not LOOKUP.fullmatch(text):
                continue  # prose (messages, docstrings), not a lookup or a path
        elif token.type != tokenize.NAME:
            continue
        if "session" in text.lower():
            yield token.start[0], text


@pytest.mark.parametrize("app", SESSION_FREE)
def test_lower_apps_do_not_name_sessions(app):
    wrong = []
    for path in _sources(app):
        name = path.relative_to(ROOT).as_posix()
        wrong += [f"{name}:{line} {text!r}" for line, text in _session_names(path)]
    assert wrong == []


def _package(model) -> str:
    return model._meta.app_config.name.split(".")[0]


def test_no_model_points_at_a_model_of_a_higher_app():
    wrong = []
    for model in apps.get_models():
        rank = _rank(_package(model))
        if rank is None:
            continue  # Django's own and third-party apps
        for field in model._meta.get_fields():
            if not field.is_relation or field.auto_created or field.related_model is None:
                continue  # reverse relations are the other side's fields
            target = field.related_model
            other = _rank(_package(target))
            if other is not None and other < rank:
                wrong.append(f"{model._meta.label}.{field.name} -> {target._meta.label}")
    assert wrong == []


def test_the_layer_checks_see_a_violation(tmp_path):
    """The checks above are not vacuous: they find a higher import, session names and lookups, not prose."""
    path = tmp_path / "module.py"
    path.write_text('"""Knows no session."""\n# nor here: a session\ndef f(run):\n'
                    '    from sessions.models import Stage\n'
                    '    log("a session ran")\n    return run.session_id, "run__session", Stage\n')
    assert [module for _, module in _imports(path)] == ["sessions.models"]
    assert _rank("sessions.models") < _rank("devices.models")
    assert [text for _, text in _session_names(path)] == ["sessions", "session_id", "run__session"]


def test_engine_sources_import_no_django():
    for path in sorted(ENGINE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "django" or n.startswith("django.") for n in names), f"{path.name} imports {names}"
        # One line saying what the module owns.
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"



def test_engine_imports_and_runs_with_django_unavailable():
    root = ENGINE_DIR.parents[1]
    code = f"""
import sys, types, importlib.abc
class NoDjango(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "django" or name.startswith("django."):
            raise ImportError("django is not available here")
sys.meta_path.insert(0, NoDjango())
pkg = types.ModuleType("optimizer")  # bypass the Django app's package __init__
pkg.__path__ = [{str(root / "optimizer")!r}]
sys.modules["optimizer"] = pkg
from optimizer.engine import synthetic, solve_certified, price
pr = synthetic.fleet(200, seed=1)
sol = solve_certified(pr)
assert abs(price(pr, sol.assignment).total - sol.total_cost) < 1e-6
assert not [m for m in sys.modules if m == "django" or m.startswith("django.")]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"

