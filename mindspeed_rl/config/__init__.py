"""Typed configuration: YAML (Hydra) becomes dataclasses once, at the entry point."""
