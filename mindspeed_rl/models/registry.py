"""The model families this package supports, by HF architecture and by checkpoint name.

The families import :mod:`mindspeed_rl.models.family` (their base class and shared helpers);
this module imports the families: the arrows point one way.
"""

from __future__ import annotations

from mindspeed_rl.errors import UserError
from mindspeed_rl.models.family import ModelFamily
from mindspeed_rl.models.llama.model import LlamaFamily
from mindspeed_rl.models.qwen2.model import Qwen2Family
from mindspeed_rl.models.qwen3.model import Qwen3Family
from mindspeed_rl.models.qwen3_moe.model import Qwen3MoeFamily

FAMILIES: tuple[ModelFamily, ...] = (LlamaFamily(), Qwen2Family(), Qwen3Family(), Qwen3MoeFamily())

_BY_NAME = {f.name: f for f in FAMILIES}
_BY_ARCHITECTURE = {arch: f for f in FAMILIES for arch in f.architectures}


def supported_architectures() -> list[str]:
    return sorted(_BY_ARCHITECTURE)


def family_for_architecture(architecture: str) -> ModelFamily:
    """The family of an HF ``architectures[0]`` entry, or a UserError listing the supported."""
    family = _BY_ARCHITECTURE.get(architecture)
    if family is None:
        raise UserError(
            f"unsupported architecture {architecture!r}; supported: "
            + ", ".join(supported_architectures())
        )
    return family


def family_by_name(name: str) -> ModelFamily:
    """The family stored in checkpoints as ``name``."""
    if name not in _BY_NAME:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(sorted(_BY_NAME))}")
    return _BY_NAME[name]
