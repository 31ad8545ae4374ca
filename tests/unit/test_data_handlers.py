"""Dataset handlers: fields, map_keys, canonical labels, row errors."""

import json

import pytest

from mindspeed_rl.data.handlers import HANDLERS, RowError, RowView, get_handler, gsm8k_answer
from mindspeed_rl.errors import UserError


def convert(handler: str, row: dict, map_keys: dict | None = None):
    return HANDLERS[handler].convert(RowView(row, map_keys or {}))


def test_gsm8k():
    example = convert("gsm8k", {"question": "Q", "answer": "work\n#### 1,200"})
    assert (example.question, example.label) == ("Q", "1200")
    assert gsm8k_answer("x #### -3") == "-3"
    assert gsm8k_answer("no mark") is None
    with pytest.raises(RowError, match="does not end with '#### <number>'"):
        convert("gsm8k", {"question": "Q", "answer": "#### many"})


def test_math_takes_the_last_box():
    row = {"problem": "P", "solution": "First \\boxed{1}, then $\\boxed{\\frac{1}{2}}$."}
    assert convert("math", row).label == "\\frac{1}{2}"
    with pytest.raises(RowError, match="no \\\\boxed"):
        convert("math", {"problem": "P", "solution": "no box"})


def test_deepscaler_prefers_answer_then_solution():
    assert (
        convert("deepscaler", {"problem": "P", "answer": " 7 ", "solution": "\\boxed{8}"}).label
        == "7"
    )
    assert convert("deepscaler", {"problem": "P", "solution": "so \\boxed{8}"}).label == "8"
    assert convert("deepscaler", {"problem": "P", "answer": 9}).label == "9"
    with pytest.raises(RowError, match="row has no key 'answer'"):
        convert("deepscaler", {"problem": "P"})


def test_countdown_label_is_canonical_json():
    example = convert("countdown", {"nums": [3, 5, 7], "target": 22})
    assert json.loads(example.label) == {"nums": [3, 5, 7], "target": 22}
    assert "[3, 5, 7]" in example.question and "22" in example.question
    assert (
        convert("countdown", {"nums": [3.0, 5], "target": 8.0}).label
        == convert("countdown", {"nums": [3, 5], "target": 8}).label
    )
    with pytest.raises(RowError, match="'nums' must be a non-empty list of integers"):
        convert("countdown", {"nums": [1.5], "target": 3})
    with pytest.raises(RowError, match="'target' must be an integer"):
        convert("countdown", {"nums": [1], "target": "3"})


def test_generic_with_map_keys_and_nested_keys():
    row = {"prompt": "Q", "reward_model": {"ground_truth": "42"}}
    keys = {"question": "prompt", "label": "reward_model.ground_truth"}
    example = convert("generic", row, keys)
    assert (example.question, example.label) == ("Q", "42")


def test_missing_and_empty_fields_name_the_key():
    with pytest.raises(RowError, match="row has no key 'q'") as err:
        convert("gsm8k", {"question": "Q", "answer": "#### 1"}, {"question": "q"})
    assert err.value.key == "q"
    with pytest.raises(RowError, match="'question' is empty"):
        convert("gsm8k", {"question": " ", "answer": "#### 1"})
    with pytest.raises(RowError, match="must be text, got list"):
        convert("gsm8k", {"question": ["Q"], "answer": "#### 1"})


def test_get_handler_checks_names_and_map_keys():
    assert get_handler("math", {"problem": "prompt"}).name == "math"
    with pytest.raises(UserError, match="unknown handler 'gsm9k'; use one of"):
        get_handler("gsm9k", {})
    with pytest.raises(UserError, match="map_keys.prompt: handler 'math' has no field 'prompt'"):
        get_handler("math", {"prompt": "problem"})
