"""Offline evaluation: R1-Zero-style metrics (pass@1, avg@k, pass@k, maj@k) and the eval run."""
