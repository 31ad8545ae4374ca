"""The hybrid actor worker: one per rank, training (megatron-core) and rollout (vLLM) in one
process, with the weights resharded between them in memory each iteration."""

from __future__ import annotations

import os
import random
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from mindspeed_rl.checkpoint import megatron_format as mf
from mindspeed_rl.config.grpo import GRPOConfig
from mindspeed_rl.config.structured import build
from mindspeed_rl.rollout.base import Completion, SamplingConfig
from mindspeed_rl.sample import Batch, Sample

STORE_TIMEOUT_S = 600
"""How long ranks wait for each other at the rendezvous (all ranks building at once)."""


def _send_output_to(log_file: str | None) -> None:
    """A worker's stdout / stderr (vLLM, megatron-core, the scorer pool) into the run's
    logs/ instead of Ray's stream to the driver's console; None keeps Ray's stream."""
    if log_file:
        from mindspeed_rl.utils.console import redirect_process_output

        redirect_process_output(Path(log_file))


def load_checkpoint_file(path: Path) -> dict:
    """A ``.pt`` file of a checkpoint, read with ``weights_only=True`` (tensors, containers and
    numbers; no pickled code): a file that needs more is refused in one line."""
    from mindspeed_rl.errors import UserError, first_line

    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the checkpoint is incomplete") from None
    except Exception as err:
        raise UserError(
            f"{path}: not a plain checkpoint file ({type(err).__name__}: "
            f"{first_line(err, 200)}); refusing to unpickle it"
        ) from None


def _store_client(master: tuple[str, int]):
    """A client of the rendezvous store rank 0 serves at ``master``."""
    from torch.distributed import TCPStore

    return TCPStore(master[0], master[1], is_master=False,
                    timeout=timedelta(seconds=STORE_TIMEOUT_S))  # fmt: skip


def _tuples(value):
    """``random.getstate()`` as saved (tuples) or as JSON-like lists, back to tuples."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


class RankProcess:
    """What every rank's Ray actor does first: the device mapping, its output, the
    torchrun-style environment of its torch.distributed world, and (rank 0) the rendezvous."""

    transfer = None
    """The trainer -> generation ranks weight group, on the ranks in it (join_transfer)."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        local_rank: int,
        local_world_size: int,
        kind: str,
        log_file: str | None = None,
    ):
        from mindspeed_rl.accelerator import (
            hide_expected_cpu_notices,
            local_device_index,
            map_device_before_imports,
        )

        map_device_before_imports(kind)
        _send_output_to(log_file)
        hide_expected_cpu_notices()
        self.rank = rank
        self.peak_memory = None
        os.environ.update(
            RANK=str(rank),
            WORLD_SIZE=str(world_size),
            # Ray shows a GPU actor only its own device: index 0, not rank % devices per node.
            LOCAL_RANK=str(local_device_index(kind, local_rank)),
            LOCAL_WORLD_SIZE=str(local_world_size),
        )

    def address(self) -> tuple[str, int]:
        """Rank 0: start the rendezvous store on this node's Ray address (127.0.0.1 for a
        run's own Ray, see workers.group.keep_ray_on_loopback), on a port the OS picks as it
        binds, and return both. The socket is bound here and handed to the store: a store
        that binds itself listens on every interface, and picking a free port first and
        binding it later (as env:// rendezvous does) races with every outgoing connection on
        the node (seen in CI: EADDRINUSE at start-up)."""
        import socket

        import ray
        from torch.distributed import TCPStore

        ip = ray.util.get_node_ip_address()
        listener = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
        listener.bind((ip, 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        fd = listener.detach()  # the store owns it from here
        try:
            self._store = TCPStore(ip, port, is_master=True, wait_for_workers=False,
                                   timeout=timedelta(seconds=STORE_TIMEOUT_S),
                                   master_listen_fd=fd)  # fmt: skip
        except Exception:
            socket.close(fd)
            raise
        return ip, port

    def _join(self, config: dict, master: tuple[str, int]) -> GRPOConfig:
        """Join this role's torch.distributed world through rank 0's store; the config."""
        os.environ.update(MASTER_ADDR=master[0], MASTER_PORT=str(master[1]))
        cfg: GRPOConfig = build(GRPOConfig, config)
        if cfg.resources.device != "auto":
            os.environ["MINDSPEED_RL_DEVICE"] = cfg.resources.device
        from mindspeed_rl.accelerator import init_distributed

        # Rank 0's own store, or a client of it.
        self._store = getattr(self, "_store", None) or _store_client(master)
        init_distributed(store=self._store)
        return cfg

    def _placement(self) -> dict:
        import ray

        from mindspeed_rl.accelerator import get_accelerator

        return {
            "rank": self.rank,
            "device": get_accelerator().kind,
            "device_index": int(os.environ["LOCAL_RANK"]),
            "node_id": ray.get_runtime_context().get_node_id(),
            "ip": ray.util.get_node_ip_address(),
        }

    def join_transfer(self, master: tuple[str, int], rank: int, size: int) -> None:
        """Join the trainer -> generation ranks weight group (see
        :mod:`mindspeed_rl.resharding.transfer`) through the trainer's rank-0 store."""
        from mindspeed_rl.accelerator import get_accelerator
        from mindspeed_rl.resharding.transfer import WeightTransfer

        # Group rank 0 is the trainer's rank 0, whose rendezvous store this is; a generation
        # rank connects to it (its own store is its generation world's).
        store = self._store if rank == 0 else _store_client(master)
        self.transfer = WeightTransfer(store, rank, size, get_accelerator().backend,
                                       STORE_TIMEOUT_S)  # fmt: skip

    def start_memory_probe(self) -> int:
        """Start sampling memory in use (see :mod:`mindspeed_rl.workers.peak_memory`);
        returns what is in use now, after the build."""
        from mindspeed_rl.accelerator import get_accelerator
        from mindspeed_rl.workers.peak_memory import PeakMemory

        self.peak_memory = PeakMemory(get_accelerator().used_memory)
        return self.peak_memory.take()

    def memory_peak(self) -> int:
        """The highest memory in use since the previous call."""
        return self.peak_memory.take()


class HybridActorWorker(RankProcess):
    """Ray actor body: one rank of the trainer, which also generates (the hybrid engine)
    unless the run has generation-only ranks. ``setup`` joins the process group and builds
    everything."""

    def setup(self, config: dict, master: tuple[str, int], load_dir: str, hf_meta_dir: str) -> dict:
        cfg = self._join(config, master)
        from mindspeed_rl.accelerator import get_accelerator
        from mindspeed_rl.models.builder import Recompute
        from mindspeed_rl.resharding import MegatronToHF
        from mindspeed_rl.rollout import create_engine
        from mindspeed_rl.training import optimizer as opt
        from mindspeed_rl.training.actor import MegatronActor
        from mindspeed_rl.training.model import DDPSettings, build_chunks, checkpoint_states, unwrap
        from mindspeed_rl.training.parallel import initialize_model_parallel
        from mindspeed_rl.training.schedule import configure_chunks
        from mindspeed_rl.workers.hybrid_memory import HybridMemory

        self.cfg = cfg
        acc = get_accelerator()
        m, o = cfg.model, cfg.optim
        initialize_model_parallel(
            m.tp, m.pp, seed=cfg.trainer.seed, vpp=m.virtual_pipeline_stages, ep=m.ep
        )
        dtype = mf.DTYPES[m.params_dtype]
        recompute = Recompute(m.recompute_granularity, m.recompute_method, m.recompute_num_layers)
        ddp = DDPSettings(o.use_distributed_optimizer, o.overlap_grad_reduce, o.grad_reduce_in_fp32)
        sp = m.sequence_parallel
        chunks, meta, iteration = build_chunks(load_dir, dtype, recompute, ddp, sp)
        configure_chunks(chunks, o.overlap_grad_reduce)
        self.meta = meta
        adam = opt.AdamSettings(
            o.lr, o.weight_decay, (o.betas[0], o.betas[1]), o.eps, o.clip_grad,
            o.use_distributed_optimizer,
        )  # fmt: skip
        self.optimizer = opt.build_optimizer(chunks, adam, dtype)
        if mf.DTYPES[meta.params_dtype].itemsize > dtype.itemsize:
            # fp32 masters from the checkpoint's own values, not from the bf16-rounded params
            # (see opt.init_main_params); a resume replaces them with the saved ones.
            states = checkpoint_states(chunks, Path(load_dir), iteration, meta)
            opt.init_main_params(self.optimizer, chunks, states)
            del states
        self.actor = MegatronActor(
            chunks, meta, self.optimizer, cfg.loss, cfg.sampling.temperature,
            cfg.trainer.micro_batch_size, pack_prompts=cfg.trainer.pack_prompts,
            max_tokens_per_micro_batch=cfg.trainer.max_tokens_per_micro_batch,
            logits_chunk_tokens=cfg.trainer.logits_chunk_tokens,
        )  # fmt: skip
        self.ref = None
        if cfg.loss.kl_coef > 0:
            ref_chunks, _, _ = build_chunks(load_dir, dtype, recompute, sequence_parallel=sp)
            for chunk in ref_chunks:
                chunk.requires_grad_(False)
            self.ref = MegatronActor(
                ref_chunks, meta, None, None, cfg.sampling.temperature,
                cfg.trainer.micro_batch_size, pack_prompts=cfg.trainer.pack_prompts,
                max_tokens_per_micro_batch=cfg.trainer.max_tokens_per_micro_batch,
                logits_chunk_tokens=cfg.trainer.logits_chunk_tokens,
            )  # fmt: skip
        # The engine is built with the training state parked, then sleeps (see HybridMemory).
        self.memory = HybridMemory(
            acc, None, chunks, self.optimizer, offload_params=cfg.rollout.offload_params,
            frozen=self.ref.chunks if self.ref is not None else (),
            pin_host_memory=cfg.rollout.pin_host_memory,
        )  # fmt: skip
        # Generation-only ranks (resources.rollout_workers) do the sampling: no engine here.
        self.engine = None
        if not cfg.resources.rollout_workers:
            self.engine = self.memory.build_engine(lambda: create_engine(cfg.rollout, hf_meta_dir))
        self.resharder = MegatronToHF(
            [unwrap(c) for c in chunks], meta, bucket_mb=cfg.rollout.bucket_mb,
            dtype=cfg.rollout.torch_dtype,
        )  # fmt: skip
        return self._placement()

    def weight_manifest(self) -> list:
        """The weight stream's buckets (names and shapes), for generation-only ranks."""
        return self.resharder.manifest()

    def send_weights(self) -> int:
        """Stream the current weights to the generation-only ranks (a collective of every
        training rank; rank 0 sends). Returns the bytes this rank sent."""
        buckets = self.resharder.iter_buckets()
        if self.transfer is None:
            for _ in buckets:  # the stream's TP / PP collectives, in lockstep with rank 0
                pass
            return 0
        return self.transfer.send(buckets)

    # -- phases ----------------------------------------------------------------------------

    def to_rollout(self) -> None:
        """Engine awake with the current weights; a no-op when it already is (the weights only
        change in the train phase)."""
        from mindspeed_rl.workers.hybrid_memory import Phase

        if self.memory.phase is not Phase.ROLLOUT:
            self.memory.to_rollout(lambda: self.engine.load_weights(self.resharder.iter_weights()))

    def to_train(self) -> None:
        """Training state on the device, engine asleep; a no-op when it already is."""
        from mindspeed_rl.workers.hybrid_memory import Phase

        if self.memory.phase is not Phase.TRAIN:
            self.memory.to_train()

    def generate(
        self, prompts: list[list[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        return self.engine.generate(prompts, sampling)

    def logprobs(self, batch: Batch, reference: bool = False) -> dict[int, list[float]]:
        actor = self.ref if reference else self.actor
        assert actor is not None, "reference log-probs asked for but loss.kl_coef is 0"
        return actor.logprobs(batch)

    def update(self, batch: Batch, mini_batches: list[list[int]], lr: float) -> dict[str, float]:
        return self.actor.update(batch, mini_batches, lr)

    # -- checkpoints -----------------------------------------------------------------------

    def save(self, root: str, iteration: int) -> None:
        """The training state (model chunks and optimizer, through megatron-core's
        dist_checkpointing: any layout resumes from it) and this rank's RNG state, under
        ``root`` (a collective)."""
        from mindspeed_rl.training import checkpoint

        folder = Path(root) / mf.iter_dir_name(iteration)
        checkpoint.save(folder / mf.TRAINING_STATE_DIR, self.actor.chunks, self.optimizer,
                        self._trained_meta())  # fmt: skip
        name, keys, pos, has_gauss, cached = np.random.get_state()
        # Plain tensors, lists and numbers only: a resume reads it with weights_only=True.
        rng = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        }
        (folder / "rng").mkdir(parents=True, exist_ok=True)
        torch.save(rng, folder / "rng" / f"rank_{self.rank:05d}.pt")

    def _trained_meta(self) -> mf.CheckpointMeta:
        """The model's metadata with the dtype it trains in (what the checkpoint holds)."""
        from dataclasses import replace

        return replace(self.meta, params_dtype=self.cfg.model.params_dtype)

    def load(self, root: str, iteration: int) -> None:
        """Restore what :meth:`save` wrote, at this run's layout. The RNG streams come back
        when the run has the same ranks as the saved one (a run of another layout draws
        differently anyway)."""
        import torch.distributed as dist

        from mindspeed_rl.training import checkpoint

        folder = Path(root) / mf.iter_dir_name(iteration)
        checkpoint.load(folder / mf.TRAINING_STATE_DIR, self.actor.chunks, self.optimizer,
                        self._trained_meta())  # fmt: skip
        rng_files = sorted((folder / "rng").glob("rank_*.pt"))
        if len(rng_files) != dist.get_world_size():
            return
        rng = load_checkpoint_file(folder / "rng" / f"rank_{self.rank:05d}.pt")
        torch.set_rng_state(rng["torch"])
        random.setstate(_tuples(rng["python"]))
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))

    # -- preflight -------------------------------------------------------------------------

    def digest(self) -> list[float]:
        """A checksum of this rank's training state (model params, then the optimizer's main
        params and Adam moments): two ranks or two moments hold the same state only if their
        digests are equal. The preflight compares it before a save and after loading that save."""
        from mindspeed_rl.training import optimizer as opt

        tensors = [p for c in self.actor.chunks for p in c.parameters()]
        tensors += opt.state_tensors(self.optimizer)
        # Reductions in each tensor's own dtype: no copy (the device may be nearly full), and
        # 25x faster on CPU than accumulating in fp64; the same state gives the same figures.
        sums = torch.stack([t.detach().sum().double().cpu() for t in tensors])
        norms = torch.stack([torch.linalg.vector_norm(t.detach()).double().cpu() for t in tensors])
        weights = torch.arange(1, len(tensors) + 1, dtype=torch.float64)
        return [float(sums @ weights), float(norms @ weights), float(len(tensors))]

    def shutdown(self) -> None:
        from mindspeed_rl.training.parallel import destroy_model_parallel

        if self.peak_memory is not None:
            self.peak_memory.close()
        if self.transfer is not None:
            self.transfer.close()
        if self.engine is not None:
            self.engine.shutdown()
        destroy_model_parallel()


class RolloutWorker(RankProcess):
    """Ray actor body: a generation-only rank (``resources.rollout_workers``): a vLLM engine
    that gets its weights from the trainer (:meth:`receive_weights`) and samples."""

    def setup(self, config: dict, master: tuple[str, int], hf_meta_dir: str) -> dict:
        cfg = self._join(config, master)  # its own world: vLLM's TP groups are made in it
        from mindspeed_rl.rollout import create_engine

        self.cfg = cfg
        self.engine = create_engine(cfg.rollout, hf_meta_dir)
        return self._placement()

    def receive_weights(self, manifest: list) -> None:
        """Load the weights the trainer's rank 0 is sending (see HybridActorWorker.send_weights)."""
        from mindspeed_rl.accelerator import get_accelerator

        assert self.transfer is not None, "join_transfer first"
        acc = get_accelerator()
        device = "cpu" if acc.on_host else acc.device
        dtype = self.cfg.rollout.torch_dtype
        self.engine.load_weights(self.transfer.receive(manifest, dtype, device))

    def generate(
        self, prompts: list[list[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        return self.engine.generate(prompts, sampling)

    def shutdown(self) -> None:
        if self.peak_memory is not None:
            self.peak_memory.close()
        if self.transfer is not None:
            self.transfer.close()
        self.engine.shutdown()


class RewardWorker:
    """Ray actor body: the reward role (:class:`~mindspeed_rl.rewards.samples.SampleScorer`)."""

    def __init__(
        self,
        reward_config: dict,
        tokenizer_dir: str,
        assistant_prefix: str,
        log_file: str | None = None,
    ):
        from transformers import AutoTokenizer

        _send_output_to(log_file)

        from mindspeed_rl.rewards.registry import RewardConfig
        from mindspeed_rl.rewards.samples import SampleScorer

        config = build(RewardConfig, reward_config, "reward")
        self.scorer = SampleScorer(
            config, AutoTokenizer.from_pretrained(tokenizer_dir), assistant_prefix
        )

    def score(self, samples: list[Sample], scorers: dict[str, float] | None = None) -> list[Sample]:
        """The samples with their reward (total, parts, reasons) and the text scored, by the
        configured scorers or ``scorers`` (name -> weight)."""
        return self.scorer(samples, scorers)

    def close(self) -> None:
        self.scorer.close()
