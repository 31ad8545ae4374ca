"""mindspeed-rl: Megatron-style RL post-training (GRPO, DAPO, Dr.GRPO) with vLLM rollouts."""

__version__ = "0.1.0"
