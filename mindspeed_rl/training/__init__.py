"""Training on megatron-core: parallel state, pipeline schedule, log-probs, losses, optimizer."""
