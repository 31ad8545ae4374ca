"""The GRPO loop: rollout -> reward -> reference log-probs -> advantages -> update -> sync."""
