"""The one place that knows about NPUs, CUDA GPUs and CPUs.

Everything device-specific goes through here: which device this process uses, which
collective backend, and the small CPU shim that lets megatron-core run without CUDA. Nothing
else in the package calls ``torch.cuda`` or imports ``torch_npu``.
"""

from mindspeed_rl.accelerator.device import (
    Accelerator,
    DeviceKind,
    cpu_bf16_note,
    cpu_has_bf16_matmul,
    get_accelerator,
    hide_expected_cpu_notices,
    init_distributed,
    local_device_index,
    map_device_before_imports,
    megatron_device_scope,
    prepare_for_megatron,
    prepare_for_vllm,
)

__all__ = [
    "Accelerator",
    "DeviceKind",
    "cpu_bf16_note",
    "cpu_has_bf16_matmul",
    "get_accelerator",
    "hide_expected_cpu_notices",
    "init_distributed",
    "local_device_index",
    "map_device_before_imports",
    "megatron_device_scope",
    "prepare_for_megatron",
    "prepare_for_vllm",
]
