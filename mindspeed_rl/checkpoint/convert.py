"""HF <-> Megatron checkpoint conversion at any TP/PP, streamed stage by stage.

hf2mcore reads one pipeline stage's HF tensors at a time (lazily, from safetensors), splits
them for every TP rank of that stage and writes the rank files; mcore2hf memory-maps one
stage's rank files, merges them layer by layer and streams the HF tensors into bounded
safetensors shards. Peak memory stays near one stage's worth of weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.checkpoint.hf_io import HFCheckpointReader, HFShardedWriter
from mindspeed_rl.errors import UserError
from mindspeed_rl.models import layout as L
from mindspeed_rl.models.registry import family_by_name, family_for_architecture
from mindspeed_rl.utils.fs import atomic_directory, check_output_dir

CONVERTED_ITERATION = 1


def hf_to_mcore(
    load_dir: str | Path,
    save_dir: str | Path,
    tp: int = 1,
    pp: int = 1,
    params_dtype: str | None = None,
    make_vocab_size_divisible_by: int = 128,
    overwrite: bool = False,
) -> mf.CheckpointMeta:
    """Convert an HF checkpoint into Megatron-LM's TP/PP layout (see :mod:`megatron_format`).

    ``params_dtype`` (fp32 / bf16 / fp16) casts the floating tensors; by default they keep the
    HF checkpoint's dtype, which makes the conversion exactly reversible.
    """
    save_dir = Path(save_dir)
    reader = HFCheckpointReader(load_dir)
    family = family_for_architecture(reader.architecture)
    spec = family.spec_from_hf_config(reader.config)
    spec.check_parallel(tp, pp)
    if make_vocab_size_divisible_by < 1:
        raise UserError("--make-vocab-size-divisible-by must be >= 1")
    if params_dtype is not None and params_dtype not in mf.DTYPES:
        raise UserError(f"unknown --params-dtype {params_dtype!r}; use fp32, bf16 or fp16")
    check_output_dir(save_dir, overwrite, reads=Path(load_dir))
    save_dir = save_dir.resolve()
    dtype = mf.DTYPES[params_dtype] if params_dtype else reader.dtype()
    meta = mf.CheckpointMeta(
        spec=spec,
        tp=tp,
        pp=pp,
        padded_vocab_size=spec.padded_vocab_size(tp, make_vocab_size_divisible_by),
        params_dtype=mf.dtype_name(dtype),
    )

    shapes = L.expected_hf_shapes(family, spec)

    def get(name: str) -> torch.Tensor:
        t = reader.get(name)
        if tuple(t.shape) != shapes[name]:
            raise UserError(
                f"tensor {name} has shape {tuple(t.shape)} but config.json implies "
                f"{shapes[name]}; the config does not match the weights in {reader.path}"
            )
        return t.to(dtype) if t.is_floating_point() else t

    names = family.global_names
    with atomic_directory(save_dir) as tmp:
        for pp_rank in range(pp):
            shards: list[dict[str, torch.Tensor]] = [{} for _ in range(tp)]
            for local, layer in enumerate(meta.stage_layers(pp_rank)):
                prefix = L.layer_prefix(local)
                for r, part in enumerate(L.hf_layer_to_mcore(family, spec, layer, get, tp)):
                    shards[r].update({prefix + k: v for k, v in part.items()})
            if pp_rank == 0:
                vocab = L.split_vocab(get(names.embedding), meta.padded_vocab_size, tp)
                for r in range(tp):
                    shards[r][L.EMBEDDING] = vocab[r]
            if pp_rank == pp - 1:
                final_norm = get(names.final_norm)
                head_name = names.embedding if spec.tie_word_embeddings else names.lm_head
                # With tied embeddings and PP > 1 the last stage keeps its own copy of the
                # embedding as output_layer, as Megatron does; with PP = 1 there is none.
                if not spec.tie_word_embeddings or pp > 1:
                    head = L.split_vocab(get(head_name), meta.padded_vocab_size, tp)
                    for r in range(tp):
                        shards[r][L.OUTPUT_LAYER] = head[r]
                for r in range(tp):
                    shards[r][L.FINAL_NORM] = final_norm.clone()
            for r in range(tp):
                mf.save_rank(tmp, CONVERTED_ITERATION, r, pp_rank, meta, shards[r])
            del shards
            reader.close()
        mf.write_tracker(tmp, CONVERTED_ITERATION)
        reader.copy_metadata_files(tmp / mf.HF_META_DIR)
    return meta


def mcore_to_hf(
    load_dir: str | Path,
    save_dir: str | Path,
    max_shard_bytes: int = 2 * 1024**3,
    overwrite: bool = False,
    iteration: int | None = None,
) -> mf.CheckpointMeta:
    """Convert a Megatron checkpoint written by mindspeed-rl (any TP/PP) back to HF: the
    tracker's iteration, or ``iteration``."""
    load_dir, save_dir = Path(load_dir), Path(save_dir)
    state = training_state_dir(load_dir, iteration)
    if state is not None:  # a trainer's checkpoint: its model, read at TP1 PP1 first
        import tempfile

        from mindspeed_rl.accelerator import hide_expected_cpu_notices

        hide_expected_cpu_notices()  # before megatron-core's imports print them
        from mindspeed_rl.training.checkpoint import export_plain

        check_output_dir(save_dir, overwrite, reads=load_dir)
        save_dir.resolve().parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=save_dir.resolve().parent) as tmp:
            plain = Path(tmp) / "plain"
            export_plain(state, plain, CONVERTED_ITERATION)
            (plain / mf.HF_META_DIR).symlink_to((load_dir / mf.HF_META_DIR).resolve())
            return mcore_to_hf(plain, save_dir, max_shard_bytes, overwrite, CONVERTED_ITERATION)
    iteration, meta = mf.read_meta(load_dir, iteration)
    check_output_dir(save_dir, overwrite, reads=load_dir)
    save_dir = save_dir.resolve()
    spec = meta.spec
    family = family_by_name(spec.family)
    names = family.global_names
    with atomic_directory(save_dir) as tmp:
        writer = HFShardedWriter(tmp, max_shard_bytes)
        for pp_rank in range(meta.pp):
            states = [
                mf.load_rank(load_dir, iteration, r, pp_rank, meta.pp)["model"]
                for r in range(meta.tp)
            ]
            if pp_rank == 0:
                embedding = L.merge_vocab([s[L.EMBEDDING] for s in states], spec.vocab_size)
                writer.add(names.embedding, embedding)
            for local, layer in enumerate(meta.stage_layers(pp_rank)):
                prefix = L.layer_prefix(local)
                layer_shards = [
                    {k[len(prefix) :]: v for k, v in s.items() if k.startswith(prefix)}
                    for s in states
                ]
                for name, tensor in L.mcore_layer_to_hf(family, spec, layer, layer_shards).items():
                    writer.add(name, tensor.clone())
            if pp_rank == meta.pp - 1:
                writer.add(names.final_norm, states[0][L.FINAL_NORM].clone())
                if not spec.tie_word_embeddings:
                    head = L.merge_vocab([s[L.OUTPUT_LAYER] for s in states], spec.vocab_size)
                    writer.add(names.lm_head, head)
            del states
            # One stage's weights in flight at a time: input maps and output buffer.
            writer.flush()
        writer.finish()
        _write_hf_metadata(load_dir / mf.HF_META_DIR, tmp, meta)
    return meta


def training_state_dir(root: Path, iteration: int | None) -> Path | None:
    """The training-state folder of checkpoint ``iteration`` (the tracker's by default) when
    ``root`` holds a trainer's checkpoints, None for a plain (hf2mcore) checkpoint."""
    if iteration is None:
        iteration = mf.read_iteration(root)
    state = root / mf.iter_dir_name(iteration) / mf.TRAINING_STATE_DIR
    return state if state.is_dir() else None


def _write_hf_metadata(meta_dir: Path, dest: Path, meta: mf.CheckpointMeta) -> None:
    """Config and tokenizer files next to the weights, with the dtype the weights now have."""
    if meta_dir.is_dir():
        for f in meta_dir.iterdir():
            if f.is_file():
                (dest / f.name).write_bytes(f.read_bytes())
    config_path = dest / "config.json"
    if not config_path.is_file():
        raise UserError(
            f"{meta_dir} has no config.json; the checkpoint lacks the HF metadata hf2mcore writes"
        )
    config = json.loads(config_path.read_text())
    torch_name = str(mf.DTYPES[meta.params_dtype]).removeprefix("torch.")
    config["torch_dtype"] = torch_name
    if "dtype" in config:
        config["dtype"] = torch_name
    config_path.write_text(json.dumps(config, indent=2) + "\n")
