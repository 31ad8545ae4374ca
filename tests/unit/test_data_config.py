"""Dataset configs: every shipped one loads and validates; overrides and bad keys."""

import pytest

from mindspeed_rl.data.handlers import HANDLERS
from mindspeed_rl.data.preprocess import DATASET_CONFIGS, DatasetConfig, load_dataset_config
from mindspeed_rl.data.templates import SHIPPED_TEMPLATES, load_templates
from mindspeed_rl.errors import UserError

SHIPPED = sorted(p.stem for p in DATASET_CONFIGS.glob("*.yaml"))


def test_the_datasets_ship():
    assert {"deepscaler", "math", "gsm8k", "countdown", "arithmetic"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate(name):
    config = load_dataset_config(name)
    # Generated arithmetic rows are already (question, label): the generic handler reads them;
    # MATH-500, AIME and AMC files have DeepScaleR's fields; GPQA Diamond is GPQA.
    reused = {"arithmetic": "generic", "math500": "deepscaler", "aime24": "deepscaler",
              "aime25": "deepscaler", "amc23": "deepscaler", "gpqa_diamond": "gpqa"}  # fmt: skip
    assert config.handler == reused.get(name, name)
    assert config.handler in HANDLERS
    assert config.template in load_templates(SHIPPED_TEMPLATES)
    assert config.output_prefix.startswith("data/")


def test_gsm8k_points_at_the_bundled_data():
    assert load_dataset_config("gsm8k").input == "assets/gsm8k/train.jsonl"


def test_overrides():
    config = load_dataset_config(
        "gsm8k", ["workers=4", "map_keys.question=q", "limit=10", "template=empty"]
    )
    assert (config.workers, config.map_keys, config.limit, config.template) == (
        4,
        {"question": "q"},
        10,
        "empty",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["wrokers=2"], "unknown key 'wrokers'"),
        (["workers"], "expected key=value"),
        (["workers=0"], "workers must be an integer >= 1"),
        (["max_prompt_length=-5"], "max_prompt_length must be a positive integer"),
        (["input_format=tsv"], "input_format must be one of"),
        (["skip_bad_rows=maybe"], "skip_bad_rows must be true or false"),
        (["workers=[1"], "gsm8k.yaml"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        load_dataset_config("gsm8k", overrides)


def test_unknown_config_and_yaml_path(tmp_path):
    with pytest.raises(UserError, match="no such dataset config; use one of .*gsm8k"):
        load_dataset_config("gsm9k")
    path = tmp_path / "mine.yaml"
    path.write_text("input: a.jsonl\noutput_prefix: out\nhandler: generic\n")
    config = load_dataset_config(str(path))
    assert config == DatasetConfig(input="a.jsonl", output_prefix="out", handler="generic")
    path.write_text("input: a.jsonl\nhandler: generic\n")
    with pytest.raises(UserError, match=f"{path}: missing key 'output_prefix'"):
        load_dataset_config(str(path))
