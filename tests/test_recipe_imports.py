"""Loading and checking a recipe imports nothing of the runtime: no torch, transformers, TRL, datasets or sandbox.

The schema (`ssp.config`), its checks (`ssp.recipe_checks`) and the curriculum (`ssp.signal.curriculum`) read the
reward names from the registry, which imports a reward function only when one is looked up.
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "transformers", "trl", "datasets", "accelerate", "vllm", "ssp.sandbox", "ssp.rewards.code",
         "ssp.rewards.math_answers", "ssp.rewards.boxed"]  # fmt: skip


def imported_after(script: str) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running `script` in the repository."""
    probe = f"{script}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_loading_and_checking_the_shipped_recipes_imports_no_runtime():
    script = (
        "from ssp.config import load_recipe\n"
        "from ssp.signal.curriculum import resolve_stages\n"
        "for path in ('recipes/sft.yaml', 'recipes/rl.yaml', 'recipes/demo/sft.yaml', 'recipes/demo/rl.yaml'):\n"
        "    recipe = load_recipe(path, ['model.name_or_path=tiny'], check_files=False)\n"
        "    assert resolve_stages(recipe.rl, check_files=False)\n"
        "recipe = load_recipe('recipes/demo/sft.yaml', ['output_dir=x'])\n"  # with its files checked too
        "assert resolve_stages(recipe.rl)\n"
    )
    assert imported_after(script) == []


def test_the_reward_registry_imports_a_reward_at_its_first_lookup():
    script = (
        "from ssp.rewards import REWARDS, get_reward\n"
        "assert 'code_tests' in REWARDS and list(REWARDS) == ['boxed_match', 'math_verify', 'code_tests']\n"
    )
    assert imported_after(script) == []
    looked_up = imported_after("from ssp.rewards import get_reward\nget_reward('boxed_match')")
    assert looked_up == ["ssp.rewards.boxed"]


def test_the_registry_serves_the_functions_themselves():
    from ssp.rewards import REWARDS, get_reward
    from ssp.rewards.boxed import boxed_match

    assert REWARDS["boxed_match"] is boxed_match and get_reward("boxed_match") is boxed_match
    assert dict(REWARDS.items())["boxed_match"] is boxed_match
