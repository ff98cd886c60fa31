"""Layers: optimizer/engine/ is plain Python and numpy."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_DIR = ROOT / "optimizer" / "engine"


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

