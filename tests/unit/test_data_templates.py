"""Prompt templates: the shipped file, user files, rendering, errors."""

import json

import pytest

from mindspeed_rl.data.templates import SHIPPED_TEMPLATES, Template, get_template, load_templates
from mindspeed_rl.errors import UserError


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir))


REQUIRED = ["qwen_r1", "qwen_math_r1", "deepseek3_r1", "llama3", "chatml", "tokenizer", "empty"]


def test_shipped_templates_load_and_render(smollm2_tokenizer):
    templates = load_templates(SHIPPED_TEMPLATES)
    assert set(REQUIRED) <= set(templates)
    for template in templates.values():
        prompt = template.render("What is 2+3?", smollm2_tokenizer)
        assert "What is 2+3?" in prompt
        assert prompt.endswith(template.assistant_prefix)


def test_r1_templates():
    qwen = get_template("qwen_r1").render("Q?")
    assert "<think> </think> and <answer> </answer> tags" in qwen
    assert "\\boxed{}" in qwen
    assert qwen.startswith("<|im_start|>")
    assert qwen.endswith("Q?<|im_end|>\n<|im_start|>assistant\n")
    math = get_template("qwen_math_r1").render("Q?")
    assert (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}."
        in math
    )
    deepseek = get_template("deepseek3_r1")
    assert deepseek.assistant_prefix == "<think>\n"
    assert deepseek.render("Q?").endswith("<｜Assistant｜><think>\n")
    assert get_template("empty").render("Q?") == "Q?"


def test_tokenizer_chat_template(smollm2_tokenizer):
    prompt = get_template("tokenizer").render("Q?", smollm2_tokenizer)
    assert prompt.endswith("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n")


def test_braces_in_questions_are_kept():
    assert get_template("empty").render("f(x) = {x}") == "f(x) = {x}"


def test_user_templates_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "_comment": "ignored",
                "mine": {"text": "Q: {question}\nA:", "assistant_prefix": " <think>"},
                "empty": {"text": ">> {question}"},
            }
        )
    )
    assert get_template("mine", path).render("x") == "Q: x\nA: <think>"
    assert get_template("empty", path).render("x") == ">> x"  # user file wins
    assert get_template("qwen_r1", path).name == "qwen_r1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"t": {"text": "no placeholder"}}', "no {question} placeholder"),
        ('{"t": {"text": "{question}", "chat_template": true}}', "exactly one of"),
        ('{"t": {"txt": "{question}"}}', "unknown key 'txt'"),
        ('{"t": {"text": "{question}", "system": "s"}}', "only applies with 'chat_template'"),
        ('{"t": "{question}"}', "expected an object"),
        ('{"t": {"text": "{question}",}}', "invalid JSON"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_bad_template_files_name_file_and_template(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        load_templates(path)
    assert str(path) in str(err.value)


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown template 'qwen_r2'.*qwen_r1"):
        get_template("qwen_r2")


def test_missing_user_file(tmp_path):
    with pytest.raises(UserError, match="templates file not found"):
        get_template("qwen_r1", tmp_path / "none.json")


def test_template_dataclass_validation():
    with pytest.raises(ValueError):
        Template(name="x", chat_template=True, user="no placeholder")
