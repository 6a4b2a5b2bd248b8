"""The package is a stack of floors; every module imports only from floors below its own.

The floors are written down once here and in the README's "Layout" section (checked to agree).
Every import of a maskllp module counts: at module level, inside functions, under TYPE_CHECKING.
A package may import its own modules; packages that share a floor do not import each other.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "maskllp"
README = Path(__file__).resolve().parents[1] / "README.md"

FLOORS: list[tuple[str, ...]] = [
    ("maskllp", "errors", "intervals", "classes", "predictions", "progress", "stains"),
    ("io",),
    ("config",),
    ("backbones", "synth"),
    ("detection", "proportion"),
    ("evaluation",),
    ("training", "report"),
    ("methods",),
    ("inference",),
    ("workflows",),
    ("cli",),
    ("__main__",),
]
"""Bottom to top. ``maskllp`` is the package's own ``__init__`` (the version)."""

FLOOR_OF = {name: k for k, floor in enumerate(FLOORS) for name in floor}


def unit_of(module: str) -> str:
    """``maskllp.detection.model`` -> ``detection``; ``maskllp`` -> ``maskllp``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every maskllp import in ``source`` (relative ones resolved)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # ``from maskllp import x`` imports the module maskllp.x when x is one
            if name == "maskllp":
                out += [(node.lineno, f"maskllp.{a.name}") for a in node.names
                        if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").is_file()]
    return [(line, n) for line, n in out if n == "maskllp" or n.startswith("maskllp.")]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of ``source`` (module ``module``) that reaches a floor not below its own."""
    own = unit_of(module)
    if own not in FLOOR_OF:
        return [f"{module}: package {own!r} is on no floor (add it to FLOORS and the README)"]
    problems = []
    for line, target in imported_modules(source, module, is_package):
        other = unit_of(target)
        if other == own:
            continue
        if other not in FLOOR_OF:
            problems.append(f"{module}:{line} imports {target}, whose package is on no floor")
        elif FLOOR_OF[other] >= FLOOR_OF[own]:
            where = "the same floor" if FLOOR_OF[other] == FLOOR_OF[own] else "a floor above"
            problems.append(f"{module}:{line} imports {target} from {where} ({other} over {own})")
    return problems


def test_every_module_imports_only_from_floors_below() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        problems += violations(text, module_name(path), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


def test_every_package_is_on_a_floor() -> None:
    units = {p.stem for p in SRC.glob("*.py")}
    units |= {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    units = {"maskllp" if u == "__init__" else u for u in units}
    assert units == set(FLOOR_OF), f"not on a floor: {units - set(FLOOR_OF)}; gone: {set(FLOOR_OF) - units}"


@pytest.mark.parametrize("source, module, expected", [
    ("from maskllp.workflows.demo import run_demo", "maskllp.detection.model", "a floor above"),
    ("def f():\n    from maskllp.training import stage1", "maskllp.io.images", "a floor above"),
    ("from maskllp.proportion.model import X", "maskllp.detection.counting", "the same floor"),
    ("from ..methods import get_method", "maskllp.io.manifest", "a floor above"),
    ("from maskllp import methods", "maskllp.config", "a floor above"),
    ("from maskllp.io.images import open_image", "maskllp.detection.model", None),
    ("from . import cells", "maskllp.detection.model", None),
])
def test_the_checker_catches_upward_and_sideways_imports(source, module, expected) -> None:
    found = violations(source, module)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0]


def test_the_readme_lists_the_same_floors() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Layout"):]
    listed = re.findall(r"^\s*(\d+)\.\s+`([^`]+)`", section, flags=re.M)
    floors = [tuple(n.strip() for n in names.split(",")) for _, names in listed]
    assert floors == FLOORS


def test_help_and_predict_path_stay_light() -> None:
    """``maskllp --help`` loads no torch; ``predict`` and ``detect`` load no Lightning."""
    code = ("import sys; import maskllp.cli; assert 'torch' not in sys.modules, 'torch at --help';"
            "import maskllp.inference.pipeline, maskllp.inference.detect;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')];"
            "assert not bad, bad[:3]")
    subprocess.run([sys.executable, "-c", code], check=True)
