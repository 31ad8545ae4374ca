"""README names every CLI, preset, dataset config, prompt template, scorer and model family
the code ships, so its lists cannot fall behind (as docs/config.md is kept by its test)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _shipped() -> list[tuple[str, str]]:
    from mindspeed_rl.models.registry import FAMILIES
    from mindspeed_rl.rewards.registry import SCORERS

    items = [("cli", f"cli/{p.name}") for p in sorted((REPO / "cli").glob("*.py"))]
    items += [("preset", f"`{p.stem}`") for p in sorted((REPO / "configs").glob("grpo_*.yaml"))]
    items += [
        ("dataset config", p.stem) for p in sorted((REPO / "configs" / "datasets").glob("*.yaml"))
    ]
    templates = json.loads((REPO / "configs" / "model" / "templates.json").read_text())
    items += [("template", f"`{t}`") for t in templates if not t.startswith("_")]
    items += [("scorer", f"`{name}`") for name in SCORERS]
    items += [("family", f.name) for f in FAMILIES]
    return items


@pytest.mark.parametrize(("kind", "needle"), _shipped())
def test_readme_names_what_ships(kind, needle):
    if kind == "family":  # README spells families as people do: Llama, Qwen2, Qwen3-MoE
        spelled = needle.replace("_moe", "-moe").replace("_", "")
        assert re.search(re.escape(spelled), README, re.IGNORECASE), f"README lacks {kind} {needle}"
        return
    assert needle in README, f"README does not mention the {kind} {needle}"
