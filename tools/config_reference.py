"""Generate docs/config.md, the configuration reference, from the typed configs.

Every key comes from the dataclasses themselves: the sections of ``GRPOConfig``, each field's
type (as written in the source), its default, and the docstring under it; plus the model
presets (``configs/model/*.yaml``), the values each GRPO preset sets, and the dataset
preprocessing config. Nothing is written by hand, so the reference cannot drift.

    python tools/config_reference.py            # (re)write docs/config.md
    python tools/config_reference.py --check    # exit 1 if docs/config.md is stale
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_OUT = REPO_ROOT / "docs" / "config.md"
REGENERATE = "python tools/config_reference.py"


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One config key as the reference shows it."""

    key: str
    """Dotted key, e.g. ``model.tp``."""
    type: str
    """The annotation as written in the source, e.g. ``int | None``."""
    default: str
    """The default rendered as YAML would spell it, or ``required``."""
    doc: str
    """The docstring under the field ("" when there is none)."""


# -- reading the dataclasses ---------------------------------------------------------------


def _class_node(cls: type) -> ast.ClassDef:
    tree = ast.parse(inspect.getsource(inspect.getmodule(cls)))  # type: ignore[arg-type]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return node
    raise LookupError(f"class {cls.__name__} not found in {inspect.getsourcefile(cls)}")


def field_sources(cls: type) -> dict[str, tuple[str, str]]:
    """Field name -> (annotation as written, docstring under it), for ``cls`` and its bases.

    A field's docstring is the string literal statement right after its annotated assignment.
    """
    found: dict[str, tuple[str, str]] = {}
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        body = _class_node(klass).body
        for stmt, after in zip(body, [*body[1:], None]):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            doc = ""
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                doc = inspect.cleandoc(after.value.value)
            found.setdefault(stmt.target.id, (ast.unparse(stmt.annotation), doc))
    return found


def class_doc(cls: type) -> str:
    """The class docstring ("" for a dataclass without one: its generated signature is noise)."""
    doc = cls.__dict__.get("__doc__") or ""
    return "" if doc.startswith(f"{cls.__name__}(") else inspect.cleandoc(doc)


def render_value(value: Any) -> str:
    """``value`` as one would write it in YAML or on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    return repr(value)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return render_value(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return render_value(f.default_factory())
    return "required"


def fields_of(cls: type, prefix: str = "") -> list[FieldDoc]:
    """Every leaf field of dataclass ``cls``, nested dataclasses flattened into dotted keys."""
    sources = field_sources(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out.extend(fields_of(hints[f.name], key))
            continue
        annotation, doc = sources.get(f.name, (str(hints[f.name]), ""))
        out.append(FieldDoc(key, annotation, _default(f), doc))
    return out


def sections() -> list[tuple[str, type]]:
    """(key, dataclass) of each top-level section of ``GRPOConfig``, in declaration order."""
    from mindspeed_rl.config.grpo import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(GRPOConfig)]


def preset_values() -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Preset names, and per key the value each preset composes to (only keys where some
    preset differs from the dataclass default)."""
    from mindspeed_rl.config.grpo import GRPOConfig, load_config
    from mindspeed_rl.config.structured import to_dict

    names = sorted(p.stem for p in (REPO_ROOT / "configs").glob("grpo_*.yaml"))
    defaults = _section_flat(to_dict(GRPOConfig()))
    composed = {name: _section_flat(to_dict(load_config(name))) for name in names}
    rows = {}
    for key, default in defaults.items():
        values = {name: composed[name][key] for name in names}
        if any(v != default for v in values.values()):
            rows[key] = values
    return names, rows


def _section_flat(tree: dict[str, Any]) -> dict[str, Any]:
    """``{section: {field: value}}`` -> ``{"section.field": value}`` (one level: fields whose
    value is a mapping, like reward.scorers, stay whole)."""
    return {f"{s}.{k}": v for s, fields in tree.items() for k, v in fields.items()}


def model_presets() -> list[tuple[str, dict[str, Any]]]:
    """(name, keys) of each ``configs/model/*.yaml``."""
    from omegaconf import OmegaConf

    out = []
    for path in sorted((REPO_ROOT / "configs" / "model").glob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        out.append((path.stem, data))  # type: ignore[arg-type]
    return out


def dataset_presets() -> list[tuple[str, dict[str, Any]]]:
    """(name, keys) of each ``configs/datasets/*.yaml``."""
    from omegaconf import OmegaConf

    out = []
    for path in sorted((REPO_ROOT / "configs" / "datasets").glob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        out.append((path.stem, data))  # type: ignore[arg-type]
    return out


# -- markdown ------------------------------------------------------------------------------

_CODE_RE = re.compile(r"(``.+?``|`[^`]+`)")


def md_inline(text: str) -> str:
    """A docstring as one line of table-safe Markdown: ``rst`` literals become code spans;
    outside them, characters Markdown or HTML would eat are escaped."""
    text = " ".join(text.split())
    out = []
    for part in _CODE_RE.split(text):
        if part.startswith("`"):
            out.append("`" + part.strip("`").replace("|", "\\|") + "`")
        else:
            for ch, esc in (("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*")):
                part = part.replace(ch, esc)
            out.append(part)
    return "".join(out)


def code(value: str) -> str:
    return "`" + value.replace("|", "\\|") + "`"


def _module_path(cls: type) -> str:
    return str(Path(inspect.getsourcefile(cls)).resolve().relative_to(REPO_ROOT))  # type: ignore[arg-type]


def _paragraphs(doc: str) -> list[str]:
    """Markdown lines of a docstring's paragraphs, a blank line between them."""
    out: list[str] = []
    for para in doc.split("\n\n"):
        out += [*([""] if out else []), md_inline(para)]
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _field_rows(fields: list[FieldDoc]) -> list[list[str]]:
    return [[code(f.key), code(f.type), code(f.default), md_inline(f.doc)] for f in fields]


INTRO = """\
# Configuration reference

<!-- Generated by tools/config_reference.py from the typed configs. Do not edit by hand:
     change the dataclass (or its docstrings) and run `python tools/config_reference.py`. -->

A GRPO run is configured by one typed dataclass, `GRPOConfig`
(`mindspeed_rl/config/grpo.py`), with one section per component. `cli/train_grpo.py
--config-name NAME` composes `configs/NAME.yaml` with Hydra (its `defaults:` list pulls in a
model from `configs/model/`), applies the command-line overrides, and builds the dataclasses
once, strictly:

- `key=value` sets any field below, whether or not the preset spells it out
  (`trainer.iterations=50 sampling.n=16 loss.kl_coef=0.001`);
- `model=NAME` picks another file of the `model` group (`configs/model/NAME.yaml`); keys the
  preset itself sets under `model:` still win over the group file;
- an unknown key, a value of the wrong type or a value a section refuses fails at start-up
  with one line naming the key; so do cross-section mistakes (checked by
  `GRPOConfig.validate`: the ranks not a multiple of `model.tp * model.pp`, a mini-batch that does not divide the batch or is not a multiple
  of data-parallel size x `trainer.micro_batch_size`, `algorithm.advantage=grpo` with
  `sampling.n < 2`, missing model or dataset files);
- `python cli/train_grpo.py --config-name NAME [overrides] --check` runs all of that and
  exits without training.

Paths are relative to the repository root wherever the command runs from. The run writes the
config it used to `<trainer.output_dir>/config.json`.

Derived figures: batch = `data.prompts_per_iteration * sampling.n` samples per iteration;
data-parallel size = `resources.nnodes * resources.devices_per_node / (model.tp * model.pp)`.
"""


def render() -> str:
    """The full text of docs/config.md."""
    from mindspeed_rl.data.preprocess import DatasetConfig

    lines = INTRO.splitlines()
    secs = sections()
    lines += ["", "## Sections", ""]
    for name, cls in secs:
        summary = class_doc(cls).split("\n\n")[0]
        lines.append(f"- [`{name}`](#{name}): {md_inline(summary)}")
    lines += [
        "- [Values the presets set](#values-the-presets-set)",
        "- [Dataset preprocessing configs](#dataset-preprocessing-configs)",
    ]
    for name, cls in secs:
        lines += ["", f"## {name}", ""]
        doc = class_doc(cls)
        if doc:
            lines += [*_paragraphs(doc), ""]
        lines += [f"`{cls.__name__}` in `{_module_path(cls)}`.", ""]
        lines += _table(
            ["key", "type", "default", "description"], _field_rows(fields_of(cls, name))
        )
        if name == "model":
            lines += _model_presets_part()

    names, rows = preset_values()
    lines += [
        "",
        "## Values the presets set",
        "",
        "What each shipped preset (`configs/grpo_*.yaml`, with its model file) composes to, for "
        "every key where some preset differs from the default above.",
        "",
    ]
    lines += _table(
        ["key", *[code(n) for n in names]],
        [[code(k), *[code(render_value(v[n])) for n in names]] for k, v in rows.items()],
    )

    lines += [
        "",
        "## Dataset preprocessing configs",
        "",
        "`cli/preprocess_data.py NAME [key=value ...]` (or `bash examples/data/preprocess_data.sh "
        "NAME ...`) reads `configs/datasets/NAME.yaml` (or a `.yaml` path) into this dataclass; "
        "`key=value` overrides any key (`map_keys.problem=prompt` reaches into the mapping).",
        "",
    ]
    lines += _paragraphs(class_doc(DatasetConfig))
    lines += ["", f"`DatasetConfig` in `{_module_path(DatasetConfig)}`.", ""]
    lines += _table(
        ["key", "type", "default", "description"], _field_rows(fields_of(DatasetConfig))
    )
    shown = ["input", "output_prefix", "handler", "template", "tokenizer", "max_prompt_length"]
    lines += ["", "Shipped dataset configs (`configs/datasets/`):", ""]
    lines += _table(
        ["name", *shown],
        [
            [code(name), *[code(render_value(data.get(k))) for k in shown]]
            for name, data in dataset_presets()
        ],
    )
    return "\n".join(lines) + "\n"


def _model_presets_part() -> list[str]:
    from mindspeed_rl.config.grpo import ModelConfig

    keys = [f.name for f in dataclasses.fields(ModelConfig)]
    presets = model_presets()
    lines = [
        "",
        "### Model presets (`configs/model/*.yaml`)",
        "",
        "The `model` section is a Hydra config group: a GRPO preset names one in its "
        "`defaults:` list (`- model: qwen25_7b`) and `model=NAME` on the command line swaps "
        "it. Each file sets keys of the `model` section above:",
        "",
    ]
    lines += _table(
        ["file", *[code(k) for k in keys]],
        [
            [
                code(f"{name}.yaml"),
                *[code(render_value(data[k])) if k in data else "" for k in keys],
            ]
            for name, data in presets
        ],
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    from mindspeed_rl.utils.generated_doc import generated_doc_main

    return generated_doc_main(
        "config_reference", __doc__.split("\n\n")[0], render, DEFAULT_OUT, REGENERATE, argv
    )


if __name__ == "__main__":
    sys.exit(main())
