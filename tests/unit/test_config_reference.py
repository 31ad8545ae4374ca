"""docs/config.md is what tools/config_reference.py generates from the typed configs."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import typing

import pytest
import yaml

from mindspeed_rl.config.grpo import GRPOConfig, ModelConfig
from tests.conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "config.md"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location(
        "config_reference", REPO_ROOT / "tools" / "config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tool) -> str:
    return tool.render()


def _grpo_keys() -> list[str]:
    hints = typing.get_type_hints(GRPOConfig)
    return [
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(GRPOConfig)
        for f in dataclasses.fields(hints[section.name])
    ]


def test_docs_config_md_is_up_to_date(generated):
    assert DOC.is_file(), "docs/config.md is missing; run `python tools/config_reference.py`"
    assert DOC.read_text() == generated, (
        "docs/config.md is out of date; run `python tools/config_reference.py`"
    )


def test_every_grpo_field_is_documented(generated, tool):
    keys = _grpo_keys()
    assert len(keys) > 50
    for key in keys:
        assert f"| `{key}` |" in generated, f"{key} missing from docs/config.md"
    for section in dataclasses.fields(GRPOConfig):
        assert f"\n## {section.name}\n" in generated
    undocumented = [
        f.key
        for name, cls in tool.sections()
        for f in tool.fields_of(cls, name)
        if not f.doc.strip()
    ]
    assert not undocumented, f"config fields without a docstring under them: {undocumented}"


def test_model_presets_are_model_fields_and_listed(generated):
    allowed = {f.name for f in dataclasses.fields(ModelConfig)}
    for path in sorted((REPO_ROOT / "configs" / "model").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert set(data) <= allowed, f"{path.name}: keys outside ModelConfig: {set(data) - allowed}"
        assert f"| `{path.name}` |" in generated


def test_field_docstrings_come_from_the_source(tool):
    fields = {f.key: f for f in tool.fields_of(ModelConfig, "model")}
    assert fields["model.tp"].doc == "Tensor-parallel size of training."
    assert fields["model.tp"].type == "int" and fields["model.tp"].default == "1"
    sampling = {f.key: f for f in tool.fields_of(GRPOConfig)}
    assert sampling["sampling.seed"].type == "int | None"
    assert sampling["optim.betas"].default == "[0.9, 0.999]"
    assert sampling["reward.scorers"].default == "{math: 1.0}"


def test_check_mode_reports_a_stale_file(tool, tmp_path, capsys):
    stale = tmp_path / "config.md"
    stale.write_text("# old\n")
    assert tool.main(["--check", "--out", str(stale)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "python tools/config_reference.py" in err
    assert tool.main(["--out", str(stale)]) == 0
    assert tool.main(["--check", "--out", str(stale)]) == 0


def test_md_inline_escapes_outside_code(tool):
    assert tool.md_inline("a <b> | ``x|y`` *z*") == "a &lt;b&gt; \\| `x\\|y` \\*z\\*"
