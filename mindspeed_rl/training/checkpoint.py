"""Training-state checkpoints through megatron-core's ``dist_checkpointing``.

One ``torch_dist`` directory holds every rank's model chunks and optimizer state as sharded
tensors with global shapes and offsets (layers under their global index, TP shards as slices
of the whole tensor, experts under their global index, the distributed optimizer's state in
the ``fully_reshardable`` format: per parameter, not per DP bucket). A rank of any other
layout reads the slices it owns, so a run saved at TP1 PP1 DP2 resumes at TP2, PP2, PP2 with
virtual stages, another DP or EP, with the distributed or the replicated optimizer.

What stays ours: ``layout.json`` beside megatron-core's files records the layout that saved;
a resume refuses in one line what megatron-core cannot map (another padded vocabulary, which
megatron pads to 128 x TP; the other optimizer class, whose state has other keys), and Adam's
``step`` needs two mends for
megatron-core 0.16.1 with torch's Adam (no TE / apex): its fully-reshardable loader copies
into a ``step`` entry it never saved, and the distributed optimizer hands every parameter the
same ``step`` tensor, which torch's Adam then increments once per parameter.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.dist_checkpointing.validation import StrictHandling
from megatron.core.optimizer import MegatronOptimizer
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
from torch.distributed.checkpoint.api import CheckpointException

from mindspeed_rl.accelerator import megatron_device_scope
from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.errors import UserError, first_line
from mindspeed_rl.training.model import unwrap

LAYOUT_FILE = "layout.json"

SHARDING = {
    "distrib_optim_sharding_type": "fully_reshardable",
    "distrib_optim_fully_reshardable_mem_efficient": True,
    "chained_optim_avoid_prefix": True,
}
"""The distributed optimizer's layout-independent format (per parameter, under its model key).
A save gathers each DP group's shards on DP rank 0 through gloo, in host memory (not on
every device, which megatron-core's default all-gather would need); at DP1 nothing moves.
megatron-core's ``dp_reshardable`` saves 6x faster (bench/checkpoint.py) but resumes only
at the same TP / PP; its ``fully_sharded_model_space`` fails in 0.16.1."""


def _inner(optimizer: MegatronOptimizer) -> list[MegatronOptimizer]:
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def model_state(chunks: list[torch.nn.Module]) -> dict:
    """Sharded state dicts of this rank's chunks (``model0``, ``model1``, ... one per virtual
    stage, as Megatron-LM names them; the tensors inside carry global layer indices)."""
    return {f"model{i}": unwrap(c).sharded_state_dict() for i, c in enumerate(chunks)}


def optimizer_state(optimizer: MegatronOptimizer, model: dict, loading: bool) -> dict:
    """Sharded state dict of every inner optimizer (dense, and experts' with MoE), keyed by its
    index in the chain."""
    return {
        i: opt.sharded_state_dict(model, is_loading=loading, metadata=SHARDING)
        for i, opt in enumerate(_inner(optimizer))
    }


def current_layout(chunks: list[torch.nn.Module], optimizer: MegatronOptimizer,
                   meta: mf.CheckpointMeta) -> dict:  # fmt: skip
    """This run's layout and model, as ``layout.json`` records them."""
    ps = parallel_state
    return {
        "tp": ps.get_tensor_model_parallel_world_size(),
        "pp": ps.get_pipeline_model_parallel_world_size(),
        "vpp": len(chunks),
        "dp": ps.get_data_parallel_world_size(),
        "ep": ps.get_expert_model_parallel_world_size(),
        "distributed_optimizer": any(
            isinstance(o, DistributedOptimizer) for o in _inner(optimizer)
        ),
        # megatron-core gives MoE experts an optimizer of their own from EP2 on.
        "optimizers": len(_inner(optimizer)),
        "padded_vocab_size": meta.padded_vocab_size,
        "model": meta.to_dict(),
    }


def check_resumable(saved: dict, current: dict, directory: Path) -> None:
    """Refuse, in one line, a resume megatron-core cannot map onto this layout."""
    if saved["padded_vocab_size"] != current["padded_vocab_size"]:
        raise UserError(
            f"{directory} was saved at TP{saved['tp']} with the vocabulary padded to "
            f"{saved['padded_vocab_size']} rows; TP{current['tp']} pads it to "
            f"{current['padded_vocab_size']}: resume at a TP that pads to the same size"
        )
    if saved["distributed_optimizer"] != current["distributed_optimizer"]:
        want = str(saved["distributed_optimizer"]).lower()
        raise UserError(
            f"{directory} holds the state of the "
            f"{'distributed' if saved['distributed_optimizer'] else 'replicated'} optimizer; "
            f"resume with optim.use_distributed_optimizer={want} (any TP / PP / DP / EP)"
        )
    if saved["optimizers"] != current["optimizers"] and not current["distributed_optimizer"]:
        raise UserError(
            f"{directory} was saved at EP{saved['ep']}; the replicated optimizer resumes MoE "
            f"only between EPs above 1 or at EP1 (this run: EP{current['ep']}); save with "
            "optim.use_distributed_optimizer=true to move between EP1 and EP > 1"
        )


def save(directory: Path, chunks: list[torch.nn.Module], optimizer: MegatronOptimizer,
         meta: mf.CheckpointMeta) -> None:  # fmt: skip
    """Write this rank's part of the training state into ``directory`` (a collective: every
    rank calls it with the same path)."""
    directory.mkdir(parents=True, exist_ok=True)
    model = model_state(chunks)
    state = {**model, "optimizer": optimizer_state(optimizer, model, loading=False)}
    with megatron_device_scope():
        dist_checkpointing.save(state, str(directory), validate_access_integrity=True)
    if torch.distributed.get_rank() == 0:
        layout = current_layout(chunks, optimizer, meta)
        (directory / LAYOUT_FILE).write_text(json.dumps(layout, indent=1) + "\n")


def load(directory: Path, chunks: list[torch.nn.Module], optimizer: MegatronOptimizer,
         meta: mf.CheckpointMeta) -> None:  # fmt: skip
    """Restore what :func:`save` wrote, at this run's layout (a collective)."""
    saved_layout = read_layout(directory)
    check_metadata(directory)
    current = current_layout(chunks, optimizer, meta)
    check_resumable(saved_layout, current, directory)
    _materialize_state(optimizer)
    model = model_state(chunks)
    state = {**model, "optimizer": optimizer_state(optimizer, model, loading=True)}
    with megatron_device_scope():
        try:
            loaded = dist_checkpointing.load(state, str(directory), strict=StrictHandling.RAISE_ALL)
        except (Exception, CheckpointException) as err:
            raise UserError(
                f"{directory}: megatron-core cannot load it at this layout ({_cause(err)})"
            ) from None
    for i, chunk in enumerate(chunks):
        unwrap(chunk).load_state_dict(loaded[f"model{i}"])
    saved = loaded["optimizer"]
    inner = _inner(optimizer)
    # The first inner optimizer's common part (hyper-parameters, Adam's step) is always saved.
    step = saved[0].get("optimizer", {}).get("param_groups", [{}])[0].get("step")
    same_chain = saved_layout["optimizers"] == current["optimizers"]
    with torch.no_grad():
        for i, opt in enumerate(inner):
            _load_optimizer(opt, saved[i], same_chain, step)


def _cause(err: BaseException) -> str:
    """One line for a failed load: torch.distributed.checkpoint wraps each rank's exception
    (a BaseException, not an Exception); the first rank's is the one worth showing."""
    if isinstance(err, CheckpointException) and err.failures:
        err = next(iter(err.failures.values()))[0]
    return f"{type(err).__name__}: {first_line(err)}"


def _materialize_state(optimizer: MegatronOptimizer) -> None:
    """Adam state tensors for every parameter before a load (megatron-core maps the sharded
    state onto existing tensors): one step with zero gradients, whose effect the load then
    overwrites (main params, moments and step counts all come from the checkpoint)."""
    with megatron_device_scope():
        for opt in _inner(optimizer):
            inner = opt.optimizer
            if inner.state:
                continue
            params = [p for g in inner.param_groups for p in g["params"]]
            for p in params:
                p.grad = torch.zeros_like(p)
            inner.step()
            for p in params:
                p.grad = None


def _load_optimizer(opt: MegatronOptimizer, state: dict, same_chain: bool, step) -> None:
    """One inner optimizer's state. With the distributed optimizer, a chain that changed
    (MoE between EP1, one optimizer, and EP > 1, dense and experts apart) keeps this run's
    parameter groups (their hyper-parameters come from the config) and takes Adam's step
    from the saved chain's first optimizer; the tensors are per parameter either way."""
    if isinstance(opt, DistributedOptimizer):
        param_state = state.pop("param_state")
        if same_chain:
            state.pop("param_state_sharding_type")
            opt.load_state_dict(state)  # the common part; sets every parameter's step
        elif step is not None:
            for param_state_entry in opt.optimizer.state.values():
                param_state_entry["step"] = torch.tensor(float(step))
        with _without_steps(opt.optimizer):
            opt.load_parameter_state_from_fully_reshardable(param_state)
    else:
        opt.load_state_dict(state)
    for param_state in opt.optimizer.state.values():
        if isinstance(param_state.get("step"), torch.Tensor):
            param_state["step"] = param_state["step"].clone()


@contextmanager
def _without_steps(inner: torch.optim.Optimizer) -> Iterator[None]:
    """Adam's per-parameter ``step`` set aside while megatron-core copies the saved tensors in
    (its 0.16.1 loader copies every state entry, ``step`` included, from a dict without one)."""
    steps = {p: s.pop("step") for p, s in inner.state.items() if "step" in s}
    try:
        yield
    finally:
        for p, step in steps.items():
            inner.state[p]["step"] = step


_METADATA_NAMES = {
    ("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),  # the checkpoint id, inert
}  # fmt: skip


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles only what torch.distributed.checkpoint writes into ``.metadata``."""

    def find_class(self, module: str, name: str):
        allowed = (
            module.startswith("torch.distributed.checkpoint.")
            or (module, name) in _METADATA_NAMES
            or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype))
        )
        if not allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not checkpoint metadata")
        return super().find_class(module, name)


def check_metadata(directory: Path) -> None:
    """Refuse, before torch.distributed.checkpoint unpickles it, a ``.metadata`` that names
    anything but checkpoint metadata (a pickle can run code: a checkpoint folder others can
    write to must not run it here). The tensors themselves are read with weights_only."""
    path = directory / ".metadata"
    try:
        with path.open("rb") as f:
            _MetadataUnpickler(f).load()
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the checkpoint is incomplete") from None
    except Exception as err:
        raise UserError(f"{path}: refused ({type(err).__name__}: {err}); the save is damaged "
                        "or not from mindspeed-rl") from None  # fmt: skip


def read_layout(directory: Path) -> dict:
    """``layout.json`` of a training-state checkpoint; one line when it is not one."""
    path = directory / LAYOUT_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{directory} has no {LAYOUT_FILE}: not a training-state checkpoint"
        ) from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({err}); the checkpoint is damaged") from None


def export_plain(directory: Path, out_root: Path, iteration: int) -> mf.CheckpointMeta:
    """The model of a training-state checkpoint written as a plain TP1 PP1 Megatron checkpoint
    (hf2mcore's layout) under ``out_root``: one process on the CPU builds the whole model
    and has megatron-core read every slice of it, whatever layout saved it."""
    from mindspeed_rl.utils.spawn import run_ranks

    meta = mf.CheckpointMeta.from_dict(read_layout(directory)["model"])
    check_metadata(directory)
    out_root.mkdir(parents=True, exist_ok=True)
    # The child's library notices (no apex / TE on CPU, deprecations) are not the user's
    # business in a converter; its one error comes back through error.txt.
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = "ignore"
    try:
        run_ranks(_export_rank, 1, str(directory), str(out_root), iteration)
    finally:
        if before is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = before
    error = out_root / "error.txt"
    if error.is_file():
        raise UserError(error.read_text().strip())
    return replace(meta, tp=1, pp=1)


def _export_rank(rank: int, world: int, directory: str, out_root: str, iteration: int) -> None:
    os.environ["MINDSPEED_RL_DEVICE"] = "cpu"  # a converter: host memory, gloo
    from mindspeed_rl.accelerator import init_distributed
    from mindspeed_rl.models.builder import build_gpt_model
    from mindspeed_rl.training.parallel import destroy_model_parallel, initialize_model_parallel

    meta = mf.CheckpointMeta.from_dict(read_layout(Path(directory))["model"])
    meta = replace(meta, tp=1, pp=1)
    init_distributed(store=torch.distributed.HashStore())  # one process: no port to race for
    initialize_model_parallel(1, 1)
    with megatron_device_scope():
        model = build_gpt_model(meta.spec, meta.padded_vocab_size, mf.DTYPES[meta.params_dtype])
        state = {"model0": model.sharded_state_dict()}
        try:
            # The optimizer's tensors are in the checkpoint too: not asked for, not read.
            loaded = dist_checkpointing.load(
                state, directory, strict=StrictHandling.ASSUME_OK_UNEXPECTED
            )
        except (Exception, CheckpointException) as err:  # told to the parent in one line
            message = f"{directory}: unreadable ({_cause(err)}); the save is damaged"
            (Path(out_root) / "error.txt").write_text(message + "\n")
            destroy_model_parallel()
            return
    model.load_state_dict(loaded["model0"])
    tensors = {k: v.detach() for k, v in model.state_dict().items()
               if v is not None and not k.endswith("_extra_state")}  # fmt: skip
    mf.save_rank(Path(out_root), iteration, 0, 0, meta, tensors)
    mf.write_tracker(Path(out_root), iteration)
    destroy_model_parallel()
