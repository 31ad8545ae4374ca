"""Prompt templates: how a dataset question becomes the text the policy continues.

Templates live in ``configs/model/templates.json``; users add their own in a file of the same
shape (``templates_file`` in a dataset config), whose entries win over shipped ones of the same
name. Keys that start with ``_`` are comments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mindspeed_rl.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TEMPLATES = REPO_ROOT / "configs" / "model" / "templates.json"
QUESTION = "{question}"


@dataclass(frozen=True)
class Template:
    """One named prompt template. Either ``text`` or ``chat_template`` is set, not both."""

    name: str
    description: str = ""
    """What it is for, shown in error messages that list templates."""
    text: str | None = None
    """The whole prompt, chat markup and special tokens included, with ``{question}``."""
    chat_template: bool = False
    """Render ``system`` and ``user`` with the tokenizer's own chat template instead."""
    system: str | None = None
    """System message for ``chat_template`` (None: the tokenizer template's default)."""
    user: str = QUESTION
    """User message for ``chat_template``, with ``{question}``."""
    assistant_prefix: str = ""
    """Start of the response that the model continues (e.g. ``<think>``); the trainer scores
    ``assistant_prefix + response``."""

    def __post_init__(self) -> None:
        if self.chat_template == (self.text is not None):
            raise ValueError("set exactly one of 'text' and 'chat_template': true")
        if self.text is not None:
            if QUESTION not in self.text:
                raise ValueError(f"'text' has no {QUESTION} placeholder")
            if self.system is not None:
                raise ValueError("'system' only applies with 'chat_template'; put it in 'text'")
        elif QUESTION not in self.user:
            raise ValueError(f"'user' has no {QUESTION} placeholder")

    def render(self, question: str, tokenizer: Any = None) -> str:
        """The prompt text for ``question``; ``tokenizer`` is needed for ``chat_template``."""
        # str.replace, not str.format: prompts are full of literal braces ("\boxed{}").
        if self.text is not None:
            return self.text.replace(QUESTION, question) + self.assistant_prefix
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": self.user.replace(QUESTION, question)})
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompt + self.assistant_prefix


_FIELDS = {f.name for f in fields(Template)} - {"name"}


def load_templates(path: Path) -> dict[str, Template]:
    """All templates in one JSON file, by name. Raises :class:`UserError` naming the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: templates file not found; fix templates_file") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the templates file as UTF-8") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of name -> template")
    templates = {}
    for name, entry in data.items():
        if name.startswith("_"):
            continue
        where = f"{path}: template {name!r}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object with 'text' or 'chat_template'")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            allowed = ", ".join(sorted(_FIELDS))
            raise UserError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {allowed}")
        try:
            templates[name] = Template(name=name, **entry)
        except (TypeError, ValueError) as err:
            raise UserError(f"{where}: {err}") from None
    return templates


def get_template(name: str, templates_file: Path | None = None) -> Template:
    """The template ``name`` from the shipped file or, winning over it, ``templates_file``."""
    templates = load_templates(SHIPPED_TEMPLATES)
    sources = [SHIPPED_TEMPLATES]
    if templates_file is not None:
        templates.update(load_templates(templates_file))
        sources.append(templates_file)
    if name not in templates:
        known = ", ".join(sorted(templates))
        raise UserError(
            f"template: unknown template {name!r} (looked in {', '.join(map(str, sources))}); "
            f"use one of {known}, or add it to a file named by templates_file"
        )
    return templates[name]
