"""Ray workers: the hybrid actor (training + rollout), reference, reward; placement."""
