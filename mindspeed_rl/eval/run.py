"""One evaluation run: a model (HF or Megatron), a held-out set, the rollout engine, the scorers.

The pieces are the training run's own: prompts come from a preprocessed dataset (or a JSONL
rendered with the same template code), responses from the rollout engines the trainer samples
with, scores from the rule scorers' process pool, metrics from :mod:`mindspeed_rl.eval.metrics`.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.errors import UserError
from mindspeed_rl.eval.metrics import greedy_metrics, sampled_metrics
from mindspeed_rl.rewards.extract import extract_answer, last_number, plain_number
from mindspeed_rl.rewards.samples import SampleScorer
from mindspeed_rl.rollout import RolloutConfig, RolloutEngine, SamplingConfig
from mindspeed_rl.sample import Sample, sample_groups

REPO_ROOT = Path(__file__).resolve().parents[2]

BUNDLED = {"gsm8k": REPO_ROOT / "assets" / "gsm8k" / "test.jsonl"}
"""Named held-out sets that ship with the repository (used when ``data/NAME/test`` is not
preprocessed)."""

SCORER_OF_HANDLER = {"gsm8k": "gsm8k", "countdown": "countdown", "gpqa": "choice"}
"""Accuracy scorer by dataset handler; every other handler's labels are math answers."""

SCORER_OF_DATASET = {"arithmetic": "gsm8k"}
"""Accuracy scorer by dataset name where it differs from its handler's (the quick-start's
arithmetic task is scored like GSM8K, as its training preset does)."""

FORMAT_SCORER = "format"

SPLITS = ("test", "val", "validation", "dev", "train")
"""Prefix names that are a split of the set named by their directory."""


@dataclass
class EvalData:
    """A held-out set ready for the engine: prompt ids and labels, and how they were made."""

    name: str
    family: str
    """What kind of set it is (``arithmetic`` for ``data/arithmetic/test``): picks the scorer."""
    prompts: list[list[int]]
    labels: list[str]
    template: str | None
    """The prompt template's name (None when the dataset summary does not say)."""
    assistant_prefix: str
    """What the template ends with inside the assistant turn; scored as part of the response."""
    handler: str | None
    source: str


@dataclass
class EvalSettings:
    """How responses are sampled and scored."""

    n: int = 1
    """Sampled responses per prompt besides the greedy one (1: greedy only)."""
    ks: list[int] = field(default_factory=list)
    """k of avg@k / pass@k / maj@k (default: n)."""
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int | None = None
    """None: the training run's sampling.max_tokens, else 1024 (see default_max_tokens)."""
    seed: int = 0
    batch: int = 64
    """Prompts per engine call (the progress unit)."""
    scorer: str | None = None
    """Accuracy scorer (default: by dataset, see SCORER_OF_DATASET / SCORER_OF_HANDLER)."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be >= 1, got {self.n}")
        self.ks = self.ks or ([self.n] if self.n > 1 else [])
        for k in self.ks:
            if k < 1:
                raise UserError(f"--k must be >= 1, got {k}")
            if k > self.n:
                raise UserError(
                    f"--k {k} is more than --n {self.n} samples per prompt; raise --n to at "
                    f"least {k} or lower --k"
                )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UserError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.batch < 1:
            raise UserError(f"--batch must be >= 1, got {self.batch}")
        if not self.temperature > 0:
            raise UserError(
                f"--temperature must be > 0, got {self.temperature} (the greedy response is "
                "always scored; --temperature is for the --n samples)"
            )
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")


# -- the model ---------------------------------------------------------------------------


@contextmanager
def shared_workdir(rank: int, world: int) -> Iterator[Path]:
    """A temporary folder all ``world`` ranks of one node see (torchrun's ranks of an
    ``--infer-tp`` engine): rank 0 makes it, and removes it once every rank is done."""
    if world == 1:
        with tempfile.TemporaryDirectory(prefix="mindspeed-rl-eval-") as work:
            yield Path(work)
        return
    import torch.distributed as dist

    holder = [tempfile.mkdtemp(prefix="mindspeed-rl-eval-") if rank == 0 else None]
    dist.broadcast_object_list(holder, src=0)
    try:
        yield Path(holder[0])
    finally:
        dist.barrier()
        if rank == 0:
            shutil.rmtree(holder[0], ignore_errors=True)


def on_rank0(fn: Callable[[], Any], rank: int, world: int) -> Any:
    """``fn()`` run by rank 0 alone, its result on every rank (one HF export of a Megatron
    checkpoint under torchrun, not one per rank). A :class:`UserError` of rank 0's is raised
    on every rank; any other error on rank 0 reaches the others as a UserError naming it."""
    if world == 1:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    failure = None
    if rank == 0:
        try:
            box = [("ok", fn())]
        except Exception as err:
            failure = err
            text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            box = [("error", text)]
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if failure is not None:
        raise failure
    if status == "error":
        raise UserError(f"rank 0: {value}")
    return value


def resolve_model(model: Path, workdir: Path, iteration: int | None = None) -> tuple[Path, str]:
    """An HF directory for ``model`` and what it was: ``hf`` or ``megatron``.

    A Megatron checkpoint (hf2mcore's output or a trainer's ``checkpoints/``, any TP/PP) is
    exported into ``workdir`` first, with the same conversion ``cli/convert_ckpt.py mcore2hf``
    runs: its newest iteration, or ``iteration``.
    """
    if not model.exists():
        raise UserError(f"--model {model} does not exist; give an HF model directory or a "
                        "Megatron checkpoint directory")  # fmt: skip
    if (model / mf.TRACKER).is_file():
        from mindspeed_rl.checkpoint.convert import mcore_to_hf

        hf_dir = workdir / "hf"
        mcore_to_hf(model, hf_dir, iteration=iteration)
        return hf_dir, "megatron"
    if iteration is not None:
        raise UserError(f"--iteration applies to a Megatron checkpoint; {model} is not one")
    if (model / "config.json").is_file():
        return model, "hf"
    raise UserError(
        f"--model {model} is neither an HF model directory (no config.json) nor a Megatron "
        f"checkpoint (no {mf.TRACKER}); point it at one of those"
    )


def run_config_of(model: Path) -> dict | None:
    """The config of the training run ``model`` came from (its ``hf/`` or ``checkpoints/``
    sits beside the run's ``config.json``), or None."""
    try:
        config = json.loads((model.resolve().parent / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def default_max_tokens(model: Path) -> tuple[int, str]:
    """The response limit to evaluate ``model`` with: its training run's sampling.max_tokens
    (a model trained on 4096-token answers must not be cut at 1024), else 1024."""
    sampling = (run_config_of(model) or {}).get("sampling")
    tokens = sampling.get("max_tokens") if isinstance(sampling, dict) else None
    if isinstance(tokens, int) and tokens > 0:
        return tokens, "the training run's sampling.max_tokens"
    return 1024, "the default"


def trained_template(model: Path) -> tuple[str, str] | None:
    """The template of the prompts a training run trained ``model`` on, and where that is said.

    A run directory holds ``config.json`` (its ``data.train_prefix``) beside ``checkpoints/``
    and ``hf/``; the training set's summary names the template. None for any other model.
    """
    run_config = model.resolve().parent / "config.json"
    try:
        path = Path((run_config_of(model) or {})["data"]["train_prefix"])
        summary_path = Path(str(path if path.is_absolute() else REPO_ROOT / path) + "_summary.json")
        template = json.loads(summary_path.read_text())["template"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (template, str(run_config)) if isinstance(template, str) else None


def check_template(model: Path, data: EvalData) -> None:
    """Refuse prompts rendered with another template than the one the model was trained on."""
    trained = trained_template(model)
    if trained is not None and data.template is not None and data.template != trained[0]:
        raise UserError(
            f"{model} was trained on prompts of template {trained[0]} ({trained[1]}) but "
            f"{data.source} uses {data.template}; evaluate with --template {trained[0]} or a set "
            "preprocessed with it"
        )


def hf_weights(hf_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The HF checkpoint's tensors by name, read one at a time."""
    from mindspeed_rl.checkpoint.hf_io import HFCheckpointReader

    reader = HFCheckpointReader(hf_dir)
    try:
        for name in reader.names():
            yield name, reader.get(name)
    finally:
        reader.close()


def build_engine(hf_dir: Path, config: RolloutConfig) -> RolloutEngine:
    """The configured rollout engine holding the weights in ``hf_dir``."""
    from mindspeed_rl.rollout import create_engine

    engine = create_engine(config, str(hf_dir))
    engine.load_weights(hf_weights(hf_dir))
    return engine


# -- the data ----------------------------------------------------------------------------


def _guess_handler(row: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Handler and key map for a JSONL row of a usual shape."""
    if "problem" in row and "answer" in row:
        return "generic", {"question": "problem", "label": "answer"}
    if "problem" in row and "solution" in row:
        return "math", {}
    if "question" in row and "answer" in row:
        if "####" in str(row["answer"]):
            return "gsm8k", {}
        return "generic", {"label": "answer"}
    if "question" in row and "label" in row:
        return "generic", {}
    if "nums" in row and "target" in row:
        return "countdown", {}
    raise UserError(
        f"cannot tell the fields of rows with keys {sorted(row)}; use problem/answer, "
        "problem/solution, question/answer or question/label"
    )


def _read_jsonl(
    path: Path, limit: int | None, map_keys: dict[str, str] | None = None
) -> tuple[list[str], list[str], str]:
    from mindspeed_rl.data.handlers import RowError, RowView, get_handler
    from mindspeed_rl.data.readers import read_records

    questions, labels, handler_name = [], [], ""
    for record in read_records(path):
        if limit is not None and len(questions) >= limit:
            break
        if record.row is None:
            raise UserError(f"{record.where}: {record.error}; fix the row")
        if not handler_name:
            if map_keys:
                handler_name = "generic"  # question / label, renamed by --map-keys
            else:
                handler_name, map_keys = _guess_handler(record.row)
            handler = get_handler(handler_name, map_keys)
        try:
            example = handler.convert(RowView(record.row, map_keys))
        except RowError as err:
            raise UserError(f"{record.where}: {err}; fix the row") from None
        questions.append(example.question)
        labels.append(example.label)
    if not questions:
        raise UserError(f"{path}: no rows to evaluate")
    return questions, labels, handler_name


def _from_prefix(
    name: str,
    family: str,
    prefix: str,
    template: str | None,
    tokenizer_dir: Path,
    limit: int | None,
) -> EvalData:
    from mindspeed_rl.data.indexed import PromptDataset
    from mindspeed_rl.data.tokenization import tokenizer_fingerprint

    ds = PromptDataset(prefix)
    recorded = ds.summary.get("tokenizer_fingerprint")
    if recorded and recorded != tokenizer_fingerprint(tokenizer_dir):
        # Ids made by another tokenizer decode to noise: a silently wrong score, not an error.
        raise UserError(
            f"{prefix} was tokenized with another tokenizer than the model's; preprocess it "
            "with the model's tokenizer (tokenizer=MODEL_DIR)"
        )
    made_with = ds.summary.get("template")
    if template is not None and made_with is not None and template != made_with:
        raise UserError(
            f"--template {template} but {prefix} was preprocessed with template {made_with}; "
            f"drop --template or preprocess the dataset with {template}"
        )
    rows = range(min(len(ds), limit) if limit is not None else len(ds))
    return EvalData(
        name=name,
        family=family,
        prompts=[ds.prompt_ids(i) for i in rows],
        labels=[ds.label(i) for i in rows],
        template=made_with,
        assistant_prefix=ds.summary.get("assistant_prefix", ""),
        handler=ds.summary.get("handler"),
        source=prefix,
    )


def _from_jsonl(
    name: str, path: Path, template: str | None, tokenizer_dir: Path, limit: int | None,
    map_keys: dict[str, str] | None = None,
) -> EvalData:  # fmt: skip
    from mindspeed_rl.data.templates import get_template
    from mindspeed_rl.data.tokenization import encode_prompts, load_hf_tokenizer

    if template is None:
        raise UserError(
            f"{path} is raw text: name the prompt template the model was trained with, "
            "e.g. --template qwen_r1 (see configs/model/templates.json)"
        )
    chosen = get_template(template)
    questions, labels, handler = _read_jsonl(path, limit, map_keys)
    hf_tokenizer = load_hf_tokenizer(tokenizer_dir)
    prompts = [chosen.render(q, hf_tokenizer) for q in questions]
    ids = list(encode_prompts(prompts, tokenizer_dir, workers=1, hf_tokenizer=hf_tokenizer))
    return EvalData(name, name, ids, labels, template, chosen.assistant_prefix, handler, str(path))


def load_eval_data(
    spec: str,
    template: str | None,
    tokenizer_dir: Path,
    limit: int | None = None,
    raw_default: str | None = None,
    map_keys: dict[str, str] | None = None,
) -> EvalData:
    """The held-out set ``spec`` names: a preprocessed prefix, a JSONL file, or a dataset name
    (``data/NAME/test`` when preprocessed, else a set that ships with the repository).

    ``template`` must match a prefix's own; raw files are rendered with it, or with
    ``raw_default`` (the model's training template) when it is None. ``map_keys`` names a raw
    file's question and label fields (``{"question": "Problem", "label": "Answer"}``) instead
    of guessing them from the usual shapes."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    path = Path(spec)
    if Path(spec + "_summary.json").is_file():
        # data/arithmetic/test is "arithmetic_test" of family "arithmetic": a split's name
        # alone would name many sets.
        family = path.parent.name if path.name in SPLITS and path.parent.name else path.name
        name = f"{family}_{path.name}" if family != path.name else family
        return _from_prefix(name, family, spec, template, tokenizer_dir, limit)
    if path.is_file():
        return _from_jsonl(path.stem, path, template or raw_default, tokenizer_dir, limit,
                           map_keys)  # fmt: skip
    if "/" not in spec:
        prefix = REPO_ROOT / "data" / spec / "test"
        if Path(str(prefix) + "_summary.json").is_file():
            return _from_prefix(f"{spec}_test", spec, str(prefix), template, tokenizer_dir, limit)
        if spec in BUNDLED:
            return _from_jsonl(spec, BUNDLED[spec], template or raw_default, tokenizer_dir, limit)
    known = ", ".join(sorted(set(BUNDLED) | _preprocessed_names()))
    raise UserError(
        f"--data {spec}: no such dataset; give a preprocessed prefix (PREFIX_summary.json), "
        f"a .jsonl file, or one of: {known}"
    )


def _preprocessed_names() -> set[str]:
    return {p.parent.name for p in (REPO_ROOT / "data").glob("*/test_summary.json")}


def scorer_for(data: EvalData, override: str | None) -> str:
    """The accuracy scorer for ``data``: ``override``, else by dataset name, else by handler."""
    if override:
        return override
    if data.family in SCORER_OF_DATASET:
        return SCORER_OF_DATASET[data.family]
    return SCORER_OF_HANDLER.get(data.handler or "", "math")


# -- scoring -----------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def _number_key(answer: str) -> str | None:
    number = last_number(answer)
    return None if number is None else str(number)


def _math_key(answer: str) -> str | None:
    from mindspeed_rl.rewards.math import normalize_latex

    normalized = normalize_latex(answer)
    number = plain_number(normalized)
    if number is not None:
        return str(Fraction(number))
    return _SPACES.sub("", normalized)


def _choice_key(answer: str) -> str | None:
    from mindspeed_rl.rewards.choice import choice_letter

    letter = choice_letter(answer)
    return letter if isinstance(letter, str) else None


VOTE_KEYS = {"gsm8k": _number_key, "countdown": _math_key, "math": _math_key,
             "choice": _choice_key}  # fmt: skip
"""How each accuracy scorer's answers are compared for majority voting (others: as math)."""


def vote_key(text: str, scorer: str) -> str | None:
    """The final answer of ``text`` as a key for majority voting: spellings of one number
    count as one vote (``0.5`` and ``\\frac{1}{2}`` do not, unless the math scorer's plain
    normalisation makes them equal)."""
    answer = extract_answer(text)
    if answer is None or not answer.strip():
        return None
    return VOTE_KEYS.get(scorer, _math_key)(answer)


class LocalRollout:
    """The generate and score roles in this process: one engine, one sample scorer. The same
    typed API as :class:`~mindspeed_rl.workers.group.WorkerGroup`, so evaluation runs the
    trainer's own generate-and-score phase and gets the same records."""

    def __init__(self, engine: RolloutEngine, scorer: SampleScorer) -> None:
        self.engine = engine
        self.scorer = scorer

    def generate(
        self, prompts: list[list[int]], labels: list[str], sampling: SamplingConfig, version: int
    ) -> list[list[Sample]]:
        return sample_groups(prompts, labels, self.engine.generate(prompts, sampling), version)

    def score(self, samples: list[Sample], scorers: dict[str, float] | None = None) -> list[Sample]:
        return self.scorer(samples, scorers)


def _progress(done: int, total: int, what: str, started: float) -> None:
    rate = done / max(time.time() - started, 1e-9)
    print(f"\r{what}: {done}/{total} prompts ({rate:.1f}/s)", end="", file=sys.stderr, flush=True)
    if done == total:
        print(file=sys.stderr, flush=True)


def generate_scored(
    rollout: LocalRollout, data: EvalData, sampling: SamplingConfig, what: str, batch: int
) -> list[list[Sample]]:
    """``sampling.n`` scored samples per prompt, generated ``batch`` prompts at a time; a
    sample's ``group`` is its prompt's index in ``data``."""
    from mindspeed_rl.driver.grpo import generate_scored as phase

    groups: list[list[Sample]] = []
    started = time.time()
    total = len(data.prompts)
    for start in range(0, total, batch):
        # Prompt i of the whole set samples with seed + i, whatever the batch size.
        chunk = replace(sampling, seed=sampling.seed + start)
        part = phase(rollout, data.prompts[start : start + batch],
                     data.labels[start : start + batch], chunk, version=0)  # fmt: skip
        groups += [[replace(s, group=start + i) for s in g] for i, g in enumerate(part)]
        _progress(min(start + batch, total), total, what, started)
    return groups


def metrics_of(
    greedy: list[list[Sample]], sampled: list[list[Sample]] | None, ks: Sequence[int],
    scorer: str, fmt: str | None,
) -> dict[str, float]:  # fmt: skip
    """``greedy_pass@1``, ``greedy_format_rate``, ``greedy_mean_length``; with samples also
    ``avg@k`` / ``pass@k`` / ``maj@k`` for every k and the samples' ``format_rate`` and
    ``mean_length``. (With k = 1, ``pass@1`` is the unbiased estimate from all n samples,
    the figure R1 reports call pass@1; the greedy one keeps its prefix.) ``scorer`` and
    ``fmt`` name the accuracy and format parts of the rewards."""

    def part(groups: list[list[Sample]], name: str | None) -> list[list[float]]:
        return [[s.reward.parts[name] if name else 0.0 for s in g] for g in groups]

    def lengths(groups: list[list[Sample]]) -> list[list[int]]:
        return [[len(s.response_ids) for s in g] for g in groups]

    greedy_part = greedy_metrics(part(greedy, scorer), formatted=part(greedy, fmt),
                                 lengths=lengths(greedy))  # fmt: skip
    out = {f"greedy_{name}": value for name, value in greedy_part.items()}
    if sampled:
        correct = part(sampled, scorer)
        answers = [[vote_key(s.text, scorer) for s in g] for g in sampled]
        for k in ks:
            out |= sampled_metrics(correct, k=k, answers=answers)
        rest = sampled_metrics(correct, formatted=part(sampled, fmt), lengths=lengths(sampled))
        out["format_rate"] = rest["format_rate"]
        out["mean_length"] = rest["mean_length"]
    return out


def sample_rows(
    data: EvalData, groups: list[list[Sample]], prompt_text: Sequence[str], scorer: str,
    fmt: str | None, greedy: bool = False,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Per-sample JSONL rows: prompt, response, score and why (``greedy``: the greedy
    responses, one per prompt)."""
    for group in groups:
        for j, s in enumerate(group):
            yield {
                "dataset": data.name,
                "prompt_index": s.group,
                "sample": "greedy" if greedy else j,
                "prompt": prompt_text[s.group],
                "label": s.label,
                "response": s.text,
                "score": s.reward.parts[scorer],
                "format": s.reward.parts[fmt] if fmt else 0.0,
                "tokens": len(s.response_ids),
                "finish": s.finish.value,
                "reasons": {k: v for k, v in s.reward.reasons.items() if v},
            }


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` through a temporary file and a rename."""
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
