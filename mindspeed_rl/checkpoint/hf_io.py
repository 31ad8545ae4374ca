"""Reading and writing Hugging Face checkpoint directories (safetensors), tensor by tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mindspeed_rl.errors import UserError

INDEX_NAME = "model.safetensors.index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")


def _open(path: Path):
    """``safe_open`` with a one-line error for a truncated or corrupt file."""
    try:
        return safe_open(path, framework="pt")
    except Exception as err:  # safetensors raises SafetensorError, OSError, ...
        raise UserError(
            f"{path}: not a readable safetensors file ({err}); download it again"
        ) from None


class HFCheckpointReader:
    """Lazy access to the tensors of an HF safetensors checkpoint: only what is asked is read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"HF model directory {self.path} does not exist; check --load-dir")
        if not any(self.path.iterdir()):
            raise UserError(f"HF model directory {self.path} is empty; check --load-dir")
        config_path = self.path / "config.json"
        if not config_path.is_file():
            raise UserError(f"{self.path} has no config.json; is it a Hugging Face model dir?")
        try:
            self.config: dict = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{config_path} is not valid JSON ({err})") from None
        self._file_of: dict[str, Path] = self._index()
        self._handles: dict[Path, object] = {}

    def _index(self) -> dict[str, Path]:
        index = self.path / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(
                    f"{index} is not a safetensors index (valid JSON with a 'weight_map'); "
                    "restore it from the model's source or delete it"
                ) from None
            if not isinstance(weight_map, dict):
                raise UserError(f"{index}: 'weight_map' must map tensor names to files")
            out = {}
            root = self.path.resolve()
            for name, fname in weight_map.items():
                target = (self.path / str(fname)).resolve()
                if target.parent != root or target.suffix != ".safetensors":
                    raise UserError(
                        f"{index}: {name!r} points to {fname!r}, not a .safetensors file in "
                        f"{self.path}; the index is damaged or not this model's"
                    )
                if not target.is_file():
                    raise UserError(f"{index}: {name!r} is in {fname}, which is missing")
                out[name] = target
            return out
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise UserError(
                f"{self.path} has no *.safetensors weights; convert .bin weights with "
                "transformers' save_pretrained(safe_serialization=True) first"
            )
        out: dict[str, Path] = {}
        for f in files:
            with _open(f) as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    out[name] = f
        return out

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or []
        if not archs:
            raise UserError(f"{self.path / 'config.json'} has no 'architectures' entry")
        return archs[0]

    def names(self) -> list[str]:
        return list(self._file_of)

    def has(self, name: str) -> bool:
        return name in self._file_of

    def get(self, name: str) -> torch.Tensor:
        if name not in self._file_of:
            raise UserError(f"tensor {name} is missing from the checkpoint in {self.path}")
        f = self._file_of[name]
        if f not in self._handles:
            self._handles[f] = _open(f)
        try:
            return self._handles[f].get_tensor(name)  # type: ignore[attr-defined]
        except Exception as err:  # safetensors raises its own error types
            raise UserError(
                f"{f}: cannot read tensor {name} ({err}); the file is damaged"
            ) from None

    def close(self) -> None:
        """Drop the memory maps, so the pages read so far stop counting against RSS."""
        self._handles.clear()

    def dtype(self) -> torch.dtype:
        """The dtype of the first floating tensor (the checkpoint's storage dtype)."""
        for name in self._file_of:
            t = self.get(name)
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    def copy_metadata_files(self, dest: Path) -> None:
        """Copy config, tokenizer, chat template and generation config (no weights)."""
        dest.mkdir(parents=True, exist_ok=True)
        for f in self.path.iterdir():
            if (
                f.is_file()
                and not f.name.startswith(".")
                and not f.name.endswith(WEIGHT_SUFFIXES)
                and f.name != INDEX_NAME
            ):
                shutil.copy2(f, dest / f.name)


class HFShardedWriter:
    """Writes tensors into safetensors files of bounded size, then the index.

    Tensors are buffered until ``max_shard_bytes`` is reached, so peak memory is one shard.
    """

    def __init__(self, path: Path, max_shard_bytes: int = 2 * 1024**3):
        self.path = Path(path)
        self.max_shard_bytes = max_shard_bytes
        self._buffer: dict[str, torch.Tensor] = {}
        self._buffer_bytes = 0
        self._files: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self._buffer and self._buffer_bytes + nbytes > self.max_shard_bytes:
            self.flush()
        self._buffer[name] = tensor.contiguous()
        self._buffer_bytes += nbytes
        self.total_bytes += nbytes

    def flush(self) -> None:
        if not self._buffer:
            return
        part = self.path / f"part-{len(self._files):05d}.safetensors"
        save_file(self._buffer, str(part), metadata={"format": "pt"})
        self._files.append(list(self._buffer))
        self._buffer, self._buffer_bytes = {}, 0

    def finish(self) -> None:
        """Flush, give the files their final HF names and write the index if sharded."""
        self.flush()
        n = len(self._files)
        if n == 1:
            (self.path / "part-00000.safetensors").rename(self.path / "model.safetensors")
            return
        weight_map = {}
        for k, names in enumerate(self._files):
            fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
            (self.path / f"part-{k:05d}.safetensors").rename(self.path / fname)
            weight_map.update(dict.fromkeys(names, fname))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.path / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
