"""The driver: the one process that runs the GRPO loop (sync -> generate -> score -> log-probs ->
advantages -> update) by calling the roles through the worker group. The megatron-core side
of training (model chunks, schedules, the actor's losses) is :mod:`mindspeed_rl.training`."""
