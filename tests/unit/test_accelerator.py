"""The accelerator layer: which device index a process uses, and the CPU meaning of
megatron-core's CUDA calls (only inside megatron_device_scope)."""

from __future__ import annotations

import torch

from mindspeed_rl.accelerator import local_device_index, megatron_device_scope


def test_one_visible_device_is_index_zero(monkeypatch):
    # Ray gives a num_gpus=1 actor one visible GPU: its index is 0 whatever the local rank.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert local_device_index("cuda", 5) == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert local_device_index("cuda", 3) == 3
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert local_device_index("cuda", 2) == 2
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "7")
    assert local_device_index("npu", 7) == 0
    assert local_device_index("cpu", 1) == 1


def test_cuda_arguments_mean_cpu_only_inside_the_scope():
    with megatron_device_scope():
        counter = torch.zeros([], dtype=torch.int, device="cuda")
        assert counter.device.type == "cpu"
        assert torch.ones(2, device=0).device.type == "cpu"
        assert torch.ones(2).type() == "torch.cuda.FloatTensor"
        assert torch.ones(2).to("cuda").device.type == "cpu"
    assert torch.ones(2).type() == "torch.FloatTensor"  # plain meaning outside


def test_bf16_matmul_is_read_from_the_cpu_flags():
    from mindspeed_rl.accelerator import cpu_bf16_note, cpu_has_bf16_matmul

    avx2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
    sapphire = "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert not cpu_has_bf16_matmul(avx2)
    assert cpu_has_bf16_matmul(sapphire)
    assert cpu_has_bf16_matmul("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # no x86 flags
    dtypes = {"model.params_dtype": "bf16", "rollout.dtype": "fp32"}
    note = cpu_bf16_note("cpu", dtypes, has_bf16=False)
    assert note is not None and note.endswith("model.params_dtype=fp32 avoids it")
    assert cpu_bf16_note("cpu", dtypes, has_bf16=True) is None
    assert cpu_bf16_note("cuda", dtypes, has_bf16=False) is None
    assert cpu_bf16_note("cpu", {"model.params_dtype": "fp32"}, has_bf16=False) is None


def test_device_questions_are_answered_by_the_accelerator():
    from mindspeed_rl.accelerator.device import Accelerator

    cpu, cuda, npu = (Accelerator(k, b) for k, b in (("cpu", "gloo"), ("cuda", "nccl"),
                                                     ("npu", "hccl")))  # fmt: skip
    assert (cpu.on_host, cuda.on_host, npu.on_host) == (True, False, False)
    assert cpu.ray_actor_options == {} and cpu.ray_bundle == {}
    assert cuda.ray_actor_options == {"num_gpus": 1} and cuda.ray_bundle == {"GPU": 1}
    # Ascend: the custom resource examples/grpo/launch.sh declares when it starts Ray.
    assert npu.ray_actor_options == {"resources": {"NPU": 1}} and npu.ray_bundle == {"NPU": 1}
    assert (cpu.default_dtype, cuda.default_dtype) == ("fp32", "bf16")
