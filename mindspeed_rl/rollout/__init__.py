"""Rollout engines: vLLM (CPU / CUDA / NPU) and a plain-torch fallback."""

from mindspeed_rl.rollout.base import Completion, RolloutConfig, RolloutEngine, SamplingConfig

__all__ = ["Completion", "RolloutConfig", "RolloutEngine", "SamplingConfig", "create_engine"]


def create_engine(config: RolloutConfig, model_dir: str) -> RolloutEngine:
    """The engine ``config.engine`` names, on this process's device, with no weights yet."""
    if config.engine == "vllm":
        from mindspeed_rl.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(config, model_dir)
    from mindspeed_rl.rollout.torch_engine import TorchEngine

    return TorchEngine(config, model_dir)
