"""The TRL side of ``bench/grpo_vs_trl.py``: TRL's ``GRPOTrainer`` on CPU, from a JSON spec.

Runs in ``bench/.venv-trl`` (``bash bench/setup_trl_env.sh``), never in the project's .venv:

    bench/.venv-trl/bin/python bench/trl_grpo_side.py SPEC.json RESULT.json

The spec (written by ``grpo_vs_trl.py``) holds the model directory, the prompts as text in the
order our trainer would take them, their labels, the reward scorers with their weights, and
the ``trl.GRPOConfig`` arguments already mapped from our preset. This script only runs them
and records, per optimizer step, its wall time, when generation ended, the rewards (total and
per scorer) and the response lengths; the driver turns steps into iterations.

Rewards come from our own scorers (``mindspeed_rl.rewards``, imported from the source tree),
through the same process pool with the same per-sample time limit as in our trainer, and the
same text: the template's assistant prefix put back in front of the decoded response.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Our scorers from the source tree; the pool's worker processes inherit sys.path.
sys.path.insert(0, str(REPO))


class ScoredBatches:
    """Scores each generated batch once with all our scorers, for the per-scorer reward
    functions TRL calls one after another on the same completions."""

    def __init__(self, reward: dict, assistant_prefix: str, on_new_batch: Callable) -> None:
        from mindspeed_rl.rewards.registry import RewardConfig, RewardScorer

        self.scorer = RewardScorer(RewardConfig(**reward))
        self.prefix = assistant_prefix
        self.on_new_batch = on_new_batch
        self._key: tuple | None = None
        self._parts: list[dict[str, float]] = []

    def parts(self, step: int, prompts: list[str], completions: list[str], labels: list[str],
              lengths: list[int]) -> list[dict]:  # fmt: skip
        """Each completion's score per scorer; scored once per generated batch."""
        key = (step, tuple(completions))
        if key != self._key:
            # Our trainer scores prefix + decoded response (workers.actor_worker.RewardWorker).
            texts = [self.prefix + c for c in completions]
            results = self.scorer.score_batch(texts, labels)
            self._key, self._parts = key, [r.parts for r in results]
            self.on_new_batch(prompts, [r.total for r in results], self._parts, lengths)
        return self._parts

    def reward_function(self, name: str) -> Callable:
        """TRL reward function returning scorer ``name``'s part; TRL applies the weight."""

        def reward(prompts, completions, label, completion_ids, trainer_state, **_) -> list[float]:
            lengths = [len(ids) for ids in completion_ids]
            parts = self.parts(trainer_state.global_step, prompts, completions, label, lengths)
            return [p[name] for p in parts]

        # TRL names each reward in its logs after the function; a module:function scorer name
        # is not an identifier, so it is sanitised.
        reward.__name__ = re.sub(r"\W", "_", name)
        return reward

    def close(self) -> None:
        self.scorer.close()


def make_recorder():
    """A ``TrainerCallback`` that times each optimizer step and collects what was scored in
    it. Defined in a function so that importing this module does not need transformers."""
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[dict] = []
            self._start: float | None = None
            self._current: dict = {}

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()
            self._current = {}

        def on_new_batch(self, prompts: list[str], totals: list[float], parts: list[dict],
                         lengths: list[int]) -> None:  # fmt: skip
            # Scoring starts right after generation and decoding: the rollout's share of the step.
            assert self._start is not None, "a batch was scored outside a training step"
            self._current = {
                "rollout_seconds": time.perf_counter() - self._start,
                # Each prompt once (TRL repeats it G times in a row): lets the driver check
                # that TRL took our prompts in our order.
                "prompts": list(dict.fromkeys(prompts)),
                "rewards": totals,
                "parts": {name: [p[name] for p in parts] for name in parts[0]},
                "response_lengths": lengths,
            }

        def on_step_end(self, args, state, control, **kwargs):
            assert self._start is not None
            self.steps.append({"seconds": time.perf_counter() - self._start, **self._current})

        def on_log(self, args, state, control, logs=None, **kwargs):
            # Per-step logs only; the end-of-training summary (train_runtime, ...) is not one.
            if logs and self.steps and "train_runtime" not in logs:
                self.steps[-1].setdefault("trl_logs", {}).update(
                    {k: v for k, v in logs.items() if isinstance(v, (int, float))}
                )

    return StepRecorder()


def observe_compute_dtype(model) -> dict[str, set[str]]:
    """The dtype the first linear layer really computes in, with and without gradients
    (generation vs training), so the report says what bf16 meant here."""
    import torch

    seen: dict[str, set[str]] = {"generate": set(), "train": set()}
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))

    def hook(module, inputs, output) -> None:
        seen["train" if torch.is_grad_enabled() else "generate"].add(str(output.dtype))

    layer.register_forward_hook(hook)
    return seen


def main(spec_path: Path, result_path: Path) -> int:
    import accelerate
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    spec = json.loads(spec_path.read_text())
    torch.set_num_threads(spec["threads"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    # fp32 weights whatever the checkpoint's config says: bf16 is TRL's mixed precision
    # (autocast), the counterpart of our bf16 compute with fp32 master weights.
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    if spec["stop_token_ids"]:
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        model.generation_config.eos_token_id = eos + list(spec["stop_token_ids"])
    dtypes_seen = observe_compute_dtype(model)

    args = dict(spec["trl_args"])
    precision_note = ""
    try:
        config = GRPOConfig(output_dir=spec["output_dir"], **args)
    except ValueError as err:
        if not args.get("bf16"):
            raise
        # Older transformers refuse bf16 without an accelerator; run fp32 and say so.
        precision_note = f"bf16 refused on this machine ({err}); ran fp32"
        args["bf16"] = False
        config = GRPOConfig(output_dir=spec["output_dir"], **args)

    recorder = make_recorder()
    scored = ScoredBatches(spec["reward"], spec["assistant_prefix"], recorder.on_new_batch)
    dataset = Dataset.from_dict({"prompt": spec["prompts"], "label": spec["labels"]})
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[scored.reward_function(name) for name in spec["reward"]["scorers"]],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        scored.close()
    result = {
        "steps": recorder.steps,
        "train_seconds": time.perf_counter() - start,
        "bf16": bool(config.bf16),
        "precision_note": precision_note,
        "compute_dtype_seen": {k: sorted(v) for k, v in dtypes_seen.items()},
        "optimizer": getattr(config.optim, "value", str(config.optim)),
        "threads": torch.get_num_threads(),
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "accelerate": accelerate.__version__,
        },
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
    }
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: trl_grpo_side.py SPEC.json RESULT.json")
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
