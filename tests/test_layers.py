"""Imports run one way: every module of ``geoloc_lib`` imports only from its own layer or below.

Layers, lowest first (the package docstring has the map):

0. core      errors, paths, config, runtime, seeding, distributed, device, portable_ops
1. data      dataset loaders, augmentation, GeoSynth; weather: synthesis and weathered sets
2. models    networks, losses, diffusion schedules
3. training  engine (``fit``), optimisers, recipes, runs
4. eval      features, ranking, metrics, tables, submissions
5. analysis  ablations, explain, cost; viz: figures
6. pipeline  cli, runner, profiles, reports index; bench: throughput benchmarks

Every import statement counts, including those inside functions. The rules in words: core
imports nothing else of the package; data, weather and models never import training, engine,
eval, analysis or viz; eval never imports training or viz; viz never imports training. One
allowance: training imports eval (per-epoch validation ranks with eval's metrics).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import geoloc_lib

PACKAGE = Path(geoloc_lib.__file__).parent

# (module prefix, layer); the longest matching prefix wins ("geoloc_lib" is the __init__ only).
LAYER_OF = {
    "geoloc_lib": "core",  # the package __init__ (version and map only)
    "geoloc_lib.core": "core",
    "geoloc_lib.data": "data",
    "geoloc_lib.weather": "weather",
    "geoloc_lib.weather.sets": "weather",
    "geoloc_lib.weather.bench": "bench",
    "geoloc_lib.models": "models",
    "geoloc_lib.losses": "models",
    "geoloc_lib.diffusion": "models",
    "geoloc_lib.engine": "training",
    "geoloc_lib.optim": "training",
    "geoloc_lib.training": "training",
    "geoloc_lib.eval": "eval",
    "geoloc_lib.analysis": "analysis",
    "geoloc_lib.viz": "viz",
    "geoloc_lib.reporting": "viz",
    "geoloc_lib.cli": "pipeline",
    "geoloc_lib.pipeline": "pipeline",
    "geoloc_lib.pipeline_record": "pipeline",
    "geoloc_lib.profiles": "pipeline",
    "geoloc_lib.dry_run": "pipeline",
    "geoloc_lib.reports_index": "pipeline",
    "geoloc_lib.train_bench": "bench",
    "geoloc_lib.gpu_bench": "bench",
    "geoloc_lib.bench": "bench",
}

# What each layer may import from the package (its own layer included).
MAY_IMPORT = {
    "core": {"core"},
    "data": {"core", "data", "weather"},
    "weather": {"core", "data", "weather"},
    "models": {"core", "data", "weather", "models"},
    # Validation during training ranks features with eval's metrics (eval never imports back).
    "training": {"core", "data", "weather", "models", "training", "eval"},
    "eval": {"core", "data", "weather", "models", "eval"},
    "analysis": {"core", "data", "weather", "models", "training", "eval", "analysis"},
    "viz": {"core", "data", "weather", "models", "eval", "analysis", "viz"},
    "pipeline": set(),  # filled below: everything
    "bench": set(),
}
ALL_LAYERS = set(MAY_IMPORT)
MAY_IMPORT["pipeline"] = ALL_LAYERS
MAY_IMPORT["bench"] = ALL_LAYERS


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> list[tuple[str, Path]]:
    return sorted((_module_name(p), p) for p in PACKAGE.rglob("*.py"))


def layer_of(module: str) -> str | None:
    best = None
    for prefix, layer in LAYER_OF.items():
        below = prefix != "geoloc_lib" and module.startswith(prefix + ".")
        if module == prefix or below:
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """Every ``geoloc_lib`` module ``path`` imports (line, module), at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "geoloc_lib":  # from geoloc_lib import x: x is a module
                found += [(node.lineno, f"geoloc_lib.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, base))
    return [(line, m) for line, m in found if m == "geoloc_lib" or m.startswith("geoloc_lib.")]


def test_every_module_has_a_layer():
    missing = [m for m, _ in _modules() if layer_of(m) is None]
    assert not missing, f"modules without a layer in tests/test_layers.py: {missing}"


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_follow_the_layers(module: str, path: Path):
    layer = layer_of(module)
    bad = []
    for line, target in imported_modules(path, module):
        target_layer = layer_of(target)
        if target_layer not in MAY_IMPORT[layer]:
            bad.append(
                f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} ({target_layer})"
            )
    assert not bad, f"{module} ({layer}) imports against the layers:\n" + "\n".join(bad)


def test_the_rules_of_the_issue_are_in_the_table():
    for low in ("data", "weather", "models"):
        assert not MAY_IMPORT[low] & {"training", "eval", "analysis", "viz", "pipeline", "bench"}
    assert not MAY_IMPORT["eval"] & {"training", "viz", "analysis"}
    assert "training" not in MAY_IMPORT["viz"]
    assert MAY_IMPORT["core"] == {"core"}
