"""The layout's promise (README, "Architecture"): packages by stage, imports one way only.

``pipelines/`` reads top to bottom as the data's way: the foundation (errors, settings,
numerics), then backbones, data, training, runs, insight, the bench and the commands. A module may
import its own package and anything below it in that order, never above; so there are no
import cycles between packages. The engine never imports the dashboard or Streamlit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "pipelines"
ORDER = [
    "errors",
    "settings",
    "numerics",
    "backbones",
    "data",
    "training",
    "runs",
    "sweeps",
    "insight",
    "bench",
    "commands",
    "__main__",
]
FOUNDATION = {"errors", "settings", "numerics"}


def imports(path: Path) -> list[tuple[str, int]]:
    """Every absolute module imported anywhere in ``path`` (top level or in a function)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
    return out


def stage(module: str) -> str | None:
    """The stage of a ``pipelines.X...`` module name (None for ``pipelines`` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pipelines" else None


MODULES = sorted(p for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT)


def test_every_module_belongs_to_a_stage():
    stages = {p.relative_to(ROOT).with_suffix("").parts[0] for p in MODULES}
    assert stages <= set(ORDER), f"add {sorted(stages - set(ORDER))} to the README's map"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path: Path):
    mine = path.relative_to(ROOT).with_suffix("").parts[0]
    upward = []
    for module, line in imports(path):
        if module.split(".")[0] in ("dashboard", "streamlit"):
            upward.append(f"line {line}: {module} (the engine never imports the dashboard)")
        target = stage(module)
        if target is None or target == mine or target in FOUNDATION and mine in FOUNDATION:
            continue
        if ORDER.index(target) > ORDER.index(mine):
            upward.append(f"line {line}: {module} ({target} is above {mine})")
    assert not upward, upward


def test_the_check_sees_an_upward_import(tmp_path: Path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipelines.runs.store import RunStore\n")
    assert [stage(m) for m, _ in imports(probe)] == ["runs"]
    assert ORDER.index("runs") > ORDER.index("data")
