"""The package's import rules (docs/architecture.md), checked on ssp's own imports, including those inside functions.

Stages meet only through model folders, so `ssp.spectrum` and `ssp.signal` never import each other; rewards and the
sandbox are leaves; the recipe schema holds no runtime.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ssp"

# Every module of ssp belongs to one layer: the longest matching prefix below decides.
LAYERS = {
    "ssp.sandbox": "sandbox",
    "ssp.rewards": "rewards",
    "ssp.coerce": "schema",
    "ssp.config": "schema",
    "ssp.recipe_checks": "schema",
    "ssp.files": "core",
    "ssp.tables": "core",
    "ssp.models": "core",
    "ssp.lora": "core",
    "ssp.tiny_models": "core",
    "ssp.pretrain": "core",
    "ssp.runs": "core",
    "ssp.resume": "core",
    "ssp.cost": "core",
    "ssp.data": "data",
    "ssp.generation": "generation",
    "ssp.evaluation": "evaluation",
    "ssp.spectrum": "spectrum",
    "ssp.signal": "signal",
    "ssp.plan": "plan",
    "ssp.serve": "serving",
    "ssp.inference": "entry",
    "ssp.demo": "entry",
    "ssp.sweep": "entry",
    "ssp.commands": "entry",
    "ssp.cli": "entry",
    "ssp.__main__": "entry",
    "ssp": "entry",
}

_BELOW_STAGES = {"schema", "core", "data", "generation", "evaluation", "rewards", "sandbox"}
# Layer -> the layers (and, written as `ssp.x`, the single modules) its modules may import.
ALLOWED = {
    "sandbox": {"sandbox"},
    "rewards": {"rewards", "sandbox", "ssp.coerce"},  # the error type of a scorer that must stop a command
    "schema": {"schema"},
    "core": {"schema", "core", "ssp.data.synthetic"},  # the tiny base's corpus holds steps of the task's solutions
    "data": {"schema", "core", "data", "rewards"},
    "generation": {"schema", "core", "data", "generation", "rewards", "sandbox"},
    "evaluation": {"schema", "core", "data", "generation", "evaluation", "rewards", "sandbox"},
    "spectrum": _BELOW_STAGES | {"spectrum"},
    "signal": _BELOW_STAGES | {"signal"},
    "plan": {"schema", "core", "data", "evaluation", "plan", "ssp.signal.curriculum"},
    "serving": _BELOW_STAGES | {"serving"},  # a model folder behind an API: no stage, no recipe
    "entry": _BELOW_STAGES | {"spectrum", "signal", "plan", "serving", "entry"},
}
# The schema may read the reward registry's names: `ssp.rewards` itself imports no reward function (tested in
# tests/test_recipe_imports.py), so this is the one import of a leaf it makes.
SCHEMA_MAY_IMPORT = {"ssp.rewards"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module}: in no layer of LAYERS (add it there and to docs/architecture.md)")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def ssp_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of an ssp module in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "ssp":  # from ssp import files
            found += [(node.lineno, f"ssp.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "ssp":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "ssp"]
    return found


def allowed(importer: str, imported: str) -> bool:
    source, target = layer_of(importer), layer_of(imported)
    if source == "schema" and imported in SCHEMA_MAY_IMPORT:
        return True
    return target in ALLOWED[source] or imported in ALLOWED[source]


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_imports_follow_the_layers():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for line, imported in ssp_imports(path):
            if not allowed(importer, imported):
                where = f"{path.relative_to(PACKAGE.parent)}:{line}"
                violations.append(f"{where}: {layer_of(importer)} {importer} imports {layer_of(imported)} {imported}")
    assert violations == [], "imports against docs/architecture.md:\n" + "\n".join(violations)


def test_the_rules_catch_a_stage_importing_another():
    assert not allowed("ssp.signal.report", "ssp.spectrum.report")
    assert not allowed("ssp.rewards.scoring", "ssp.evaluation.evaluate")
    assert allowed("ssp.rewards.scoring", "ssp.coerce") and not allowed("ssp.rewards.scoring", "ssp.config")
    assert not allowed("ssp.config", "ssp.models")
    assert not allowed("ssp.sandbox.pool", "ssp.rewards")
    assert allowed("ssp.config", "ssp.rewards") and not allowed("ssp.config", "ssp.rewards.code")
    assert allowed("ssp.plan", "ssp.signal.curriculum") and not allowed("ssp.plan", "ssp.signal.run")
