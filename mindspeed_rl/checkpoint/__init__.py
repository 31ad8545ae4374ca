"""Checkpoints: HF <-> Megatron conversion at any TP/PP, and RL training checkpoints."""
