"""The training side of the hybrid actor: log-probs and GRPO updates on this rank's chunks.

A :class:`~mindspeed_rl.sample.Batch` of samples comes in (prompt, response, the columns
later phases filled). A call works on this rank's data-parallel share,
packs it into micro-batches and runs them through megatron-core's schedule
(:mod:`mindspeed_rl.training.schedule`); gradients are reduced by megatron-core's DDP and
applied by its optimizer. Logits at position t score token t+1, so response token j of a
sample with prompt length P is scored by position P + j - 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.optimizer import MegatronOptimizer
from megatron.core.utils import get_model_config

from mindspeed_rl.algorithms.policy_loss import GRPOLossConfig, grpo_loss
from mindspeed_rl.checkpoint.megatron_format import CheckpointMeta
from mindspeed_rl.models.attention import packed_params
from mindspeed_rl.sample import Batch
from mindspeed_rl.training import optimizer as opt
from mindspeed_rl.training.schedule import MicroBatch, TokenScores, causal_mask, run_schedule


def dp_shard(n: int) -> range:
    """The contiguous slice of ``n`` samples this data-parallel rank works on."""
    dp = parallel_state.get_data_parallel_world_size()
    rank = parallel_state.get_data_parallel_rank()
    per = -(-n // dp)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[k : k + size] for k in range(0, len(items), size)]


def _prompt_packs(samples: Batch, indices: Sequence[int], size: int) -> list[list[int]]:
    """``indices`` grouped by identical prompt (first-seen order), at most ``size`` a pack."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in indices:
        groups.setdefault(tuple(samples[i].prompt_ids), []).append(i)
    return [g[k : k + size] for g in groups.values() for k in range(0, len(g), size)]


def sample_tokens(samples: Batch, i: int) -> int:
    return samples[i].tokens


def balanced_shards(samples: Batch, indices: Sequence[int], dp: int) -> list[list[int]]:
    """``indices`` split over ``dp`` ranks with about equal tokens each: longest first, each
    to the rank with the fewest tokens so far (ties: fewer samples, then the lower rank).
    Deterministic, so every rank computes every rank's share."""
    shards: list[list[int]] = [[] for _ in range(dp)]
    load = [0] * dp
    for i in sorted(indices, key=lambda i: (-sample_tokens(samples, i), i)):
        r = min(range(dp), key=lambda r: (load[r], len(shards[r]), r))
        shards[r].append(i)
        load[r] += sample_tokens(samples, i)
    return shards


def token_bins(samples: Batch, indices: Sequence[int], budget: int) -> list[list[int]]:
    """``indices`` packed into micro-batches of at most ``budget`` tokens (prompt + response),
    first-fit decreasing; a sample longer than the budget gets a micro-batch of its own."""
    bins: list[list[int]] = []
    load: list[int] = []
    for i in sorted(indices, key=lambda i: (-sample_tokens(samples, i), i)):
        n = sample_tokens(samples, i)
        for b in range(len(bins)):
            if load[b] + n <= budget:
                bins[b].append(i)
                load[b] += n
                break
        else:
            bins.append([i])
            load.append(n)
    return bins


def is_output_rank() -> bool:
    """The rank of its model-parallel group that reports results (last stage, TP rank 0)."""
    return (
        parallel_state.is_pipeline_last_stage()
        and parallel_state.get_tensor_model_parallel_rank() == 0
    )


class MegatronActor:
    """Log-probs and clipped-ratio updates for this rank's model chunks (DDP-wrapped when
    it trains)."""

    def __init__(
        self,
        chunks: list[torch.nn.Module],
        meta: CheckpointMeta,
        optimizer: MegatronOptimizer | None,
        loss_config: GRPOLossConfig | None,
        temperature: float,
        micro_batch_size: int,
        pad_id: int = 0,
        pack_prompts: bool = False,
        max_tokens_per_micro_batch: int = 0,
        logits_chunk_tokens: int = 0,
    ):
        self.chunks = chunks
        self.meta = meta
        self.optimizer = optimizer
        self.loss_config = loss_config
        self.temperature = temperature
        self.micro_batch_size = micro_batch_size
        self.pad_id = pad_id
        self.pack_prompts = pack_prompts
        self.max_tokens = max_tokens_per_micro_batch
        self.logits_chunk = logits_chunk_tokens
        # Under sequence parallelism every pass's length is a multiple of TP (each rank holds
        # an equal slice of the sequence); padding tokens are masked out of the loss.
        sp = get_model_config(chunks[0]).sequence_parallel
        self.seq_multiple = parallel_state.get_tensor_model_parallel_world_size() if sp else 1
        self.dtype = next(chunks[0].parameters()).dtype
        self.device = next(chunks[0].parameters()).device

    # -- packing ---------------------------------------------------------------------------

    def _pack(self, samples: Batch, rows: Sequence[int | None], seq_len: int) -> MicroBatch:
        """Right-padded micro-batch; ``None`` rows are all-padding fillers (mask 0).

        Per-token tensors (mask, old / ref log-probs) cover the predicted positions from
        ``logits_from``, the last position of the shortest prompt, to ``seq_len - 2``.
        """
        b = len(rows)
        seq_len = self._sp_length(seq_len)
        real = [i for i in rows if i is not None]
        start = min((len(samples[i].prompt_ids) - 1 for i in real), default=0)
        width = seq_len - 1 - start
        tokens = torch.full((b, seq_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros(b, width)
        adv = torch.zeros(b, width)
        old = torch.zeros(b, width)
        ref = torch.zeros(b, width)
        rollout = torch.zeros(b, width)
        for r, i in enumerate(rows):
            if i is None:
                continue
            p, resp = samples[i].prompt_ids, samples[i].response_ids
            seq = p + resp
            tokens[r, : len(seq)] = torch.tensor(seq)
            span = slice(len(p) - 1 - start, len(seq) - 1 - start)
            mask[r, span] = 1.0
            if samples[i].advantage is not None:
                adv[r, span] = samples[i].advantage
            if samples[i].old_logprobs is not None:
                old[r, span] = torch.tensor(samples[i].old_logprobs)
            if samples[i].ref_logprobs is not None:
                ref[r, span] = torch.tensor(samples[i].ref_logprobs)
            if samples[i].rollout_logprobs is not None:
                rollout[r, span] = torch.tensor(samples[i].rollout_logprobs)
        positions = torch.arange(seq_len).expand(b, seq_len)
        extra = {"mask": mask, "adv": adv, "old": old, "ref": ref, "rollout": rollout}
        return MicroBatch(
            tokens_BS=tokens.to(self.device),
            position_ids_BS=positions.to(self.device),
            attention_mask_B1SS=causal_mask(seq_len, self.device),
            extra={k: v.to(self.device) for k, v in extra.items()},
            logits_from=start,
            targets_BN=tokens[:, start + 1 :].to(self.device),
        )

    def _sp_length(self, n: int) -> int:
        """``n`` tokens rounded up to what sequence parallelism splits evenly over TP."""
        return -(-n // self.seq_multiple) * self.seq_multiple

    def _response_extras(
        self, samples: Batch, rows: Sequence[int], predictors: list[int]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Per-token tensors of a micro-batch whose logits are read at ``predictors`` (every
        row's response tokens in turn): the padded ``[rows, longest]`` layout the loss
        expects with its ``unpack`` index into the predictors; the predictors' positions; the
        ``[1, N]`` targets they score."""
        responses = [samples[i].response_ids for i in rows]
        longest = max((len(r) for r in responses), default=0)
        unpack = torch.zeros(len(rows), longest, dtype=torch.long)
        mask, adv, old, ref, rollout = (torch.zeros(len(rows), longest) for _ in range(5))
        at = 0
        for r, (i, resp) in enumerate(zip(rows, responses)):
            n = len(resp)
            unpack[r, :n] = torch.arange(at, at + n)
            at += n
            mask[r, :n] = 1.0
            if samples[i].advantage is not None:
                adv[r, :n] = samples[i].advantage
            if samples[i].old_logprobs is not None:
                old[r, :n] = torch.tensor(samples[i].old_logprobs)
            if samples[i].ref_logprobs is not None:
                ref[r, :n] = torch.tensor(samples[i].ref_logprobs)
            if samples[i].rollout_logprobs is not None:
                rollout[r, :n] = torch.tensor(samples[i].rollout_logprobs)
        assert at == len(predictors)
        targets = [t for resp in responses for t in resp]
        extra = {"mask": mask, "adv": adv, "old": old, "ref": ref, "rollout": rollout,
                 "unpack": unpack}  # fmt: skip
        return (
            {k: v.to(self.device) for k, v in extra.items()},
            torch.tensor(predictors, dtype=torch.long, device=self.device),
            torch.tensor([targets], dtype=torch.long, device=self.device),
        )

    def _pack_shared_prompt(self, samples: Batch, rows: Sequence[int]) -> MicroBatch:
        """One row: the prompt once, then each response of ``rows`` (which share that prompt).

        Each response attends to the prompt and to its own earlier tokens only, and its RoPE
        positions continue from the prompt's length, so every response sees exactly what it
        sees alone; the prompt's forward and backward run once instead of once per response.
        The last prompt position predicts every response's first token. Per-token tensors come
        back in the padded ``[responses, longest]`` layout the loss expects.
        """
        prompt = samples[rows[0]].prompt_ids
        n_prompt = len(prompt)
        responses = [samples[i].response_ids for i in rows]
        used = n_prompt + sum(len(r) for r in responses)
        seq_len = self._sp_length(used)
        allowed = torch.zeros(seq_len, seq_len, dtype=torch.bool)
        allowed[:n_prompt, :n_prompt] = torch.ones(n_prompt, n_prompt, dtype=torch.bool).tril()
        tokens, positions, predict_from = list(prompt), list(range(n_prompt)), []
        for resp in responses:
            start, n = len(tokens), len(resp)
            tokens += resp
            positions += range(n_prompt, n_prompt + n)
            allowed[start : start + n, :n_prompt] = True
            allowed[start : start + n, start : start + n] = torch.ones(n, n).tril().bool()
            predict_from += [n_prompt - 1, *range(start, start + n - 1)][:n]
        for pad in range(used, seq_len):  # sequence-parallel padding: attends to itself only
            tokens.append(self.pad_id)
            positions.append(0)
            allowed[pad, pad] = True
        extra, index, targets = self._response_extras(samples, rows, predict_from)
        position_ids = torch.tensor(positions)
        return MicroBatch(
            tokens_BS=torch.tensor([tokens], device=self.device),
            position_ids_BS=position_ids[None].to(self.device),
            attention_mask_B1SS=(~allowed)[None, None].to(self.device),
            extra=extra,
            logits_index=index,
            targets_BN=targets,
            rope_positions=position_ids.to(self.device),
        )

    def _pack_thd(self, samples: Batch, rows: Sequence[int]) -> MicroBatch:
        """``rows``' sequences (prompt + response) back to back in one row, THD: each attends
        to itself only and its positions restart at 0 (megatron-core applies RoPE per
        sequence from ``cu_seqlens``); no padding, no mask. Per-token tensors come back in the
        padded ``[rows, longest]`` layout the loss expects."""
        tokens: list[int] = []
        positions: list[int] = []
        predict_from: list[int] = []
        bounds = [0]
        for i in rows:
            prompt, resp = samples[i].prompt_ids, samples[i].response_ids
            start = len(tokens)
            tokens += prompt + resp
            positions += range(len(prompt) + len(resp))
            first = start + len(prompt) - 1  # the prompt's last position scores response[0]
            predict_from += range(first, first + len(resp))
            bounds.append(len(tokens))
        pad = self._sp_length(len(tokens)) - len(tokens)
        if pad:  # sequence-parallel padding: a sequence of its own, never read
            tokens += [self.pad_id] * pad
            positions += range(pad)
            bounds.append(len(tokens))
        extra, index, targets = self._response_extras(samples, rows, predict_from)
        cu_seqlens = torch.tensor(bounds, dtype=torch.int32, device=self.device)
        longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:]))
        return MicroBatch(
            tokens_BS=torch.tensor([tokens], device=self.device),
            position_ids_BS=torch.tensor([positions], device=self.device),
            attention_mask_B1SS=None,
            extra=extra,
            logits_index=index,
            targets_BN=targets,
            packed=packed_params(cu_seqlens, longest),
        )

    def _token_budget_micro_batches(
        self, samples: Batch, indices: Sequence[int]
    ) -> tuple[list[MicroBatch], list[Sequence[int]]]:
        """This rank's micro-batches of at most ``max_tokens`` tokens each (THD), from a share
        of ``indices`` balanced in tokens over the data-parallel ranks. Every rank runs as
        many micro-batches as the busiest (fillers with no loss): expert-parallel all-to-alls
        span data-parallel ranks and must meet once per micro-batch on each."""
        dp = parallel_state.get_data_parallel_world_size()
        rank = parallel_state.get_data_parallel_rank()
        bins = [token_bins(samples, shard, self.max_tokens)
                for shard in balanced_shards(samples, indices, dp)]  # fmt: skip
        mine = bins[rank]
        mbs = [self._pack_thd(samples, rows) for rows in mine]
        missing = max(len(b) for b in bins) - len(mine)
        if missing:
            filler = replace(mbs[-1] if mbs else self._pack_thd(samples, [indices[0]]), filler=True)
            mbs += [filler] * missing
        return mbs, [*mine, *([[]] * missing)]

    def _micro_batches(
        self, samples: Batch, indices: Sequence[int]
    ) -> tuple[list[MicroBatch], list[Sequence[int]]]:
        """This data-parallel rank's micro-batches over its share of ``indices`` (the same
        list on every rank) and the sample index of each of their rows."""
        if self.max_tokens:
            return self._token_budget_micro_batches(samples, indices)
        indices = [indices[j] for j in dp_shard(len(indices))]
        mbs = self.micro_batch_size
        if self.pack_prompts:
            packs = [
                pack
                for pack in _prompt_packs(samples, indices, mbs)
                if any(samples[i].response_ids for i in pack)
            ]
            if sum(len(p) for p in packs) == len(indices):
                return [self._pack_shared_prompt(samples, p) for p in packs], packs
            # Some prompt got only empty responses: the padded layout handles those rows.
        seq_len = max(
            (samples[i].tokens for i in indices),
            default=2,
        )
        rows: list[int | None] = list(indices)
        rows += [None] * (-len(rows) % mbs)
        chunks = _chunks(indices, mbs)
        return [
            self._pack(samples, rows[k : k + mbs], seq_len) for k in range(0, len(rows), mbs)
        ], chunks

    def _scores(self, entropy: bool) -> TokenScores:
        """What the output layer computes for this actor's passes (see :class:`TokenScores`)."""
        grad = entropy and self.loss_config is not None and self.loss_config.entropy_coef > 0
        vocab = self.meta.spec.vocab_size
        return TokenScores(vocab, self.temperature, entropy, grad, self.logits_chunk)

    @staticmethod
    def _token_logprobs(scores_BN2: torch.Tensor, mb: MicroBatch):
        """Per-token log-probs and entropies of the responses, ``[rows, positions]`` aligned
        with ``mb.extra["mask"]``, from the output layer's token scores."""
        lp, ent = scores_BN2[..., 0], scores_BN2[..., 1]
        if mb.logits_index is not None:  # packed: the predictors of every response in turn
            unpack = mb.extra["unpack"]
            return lp[0][unpack], ent[0][unpack]
        return lp, ent  # padded rows: positions logits_from .. S-2

    # -- log-probs -------------------------------------------------------------------------

    @torch.no_grad()
    def logprobs(self, samples: Batch) -> dict[int, list[float]]:
        """Response log-probs of this DP rank's share, keyed by sample index (output ranks;
        others return an empty dict)."""
        mbs, row_lists = self._micro_batches(samples, range(len(samples)))

        def collect(scores_BN2, mb):
            lp_BS, _ = self._token_logprobs(scores_BN2, mb)
            return lp_BS.sum() * 0, mb.extra["mask"].sum(), lp_BS

        results = run_schedule(self.chunks, mbs, collect, True, self._scores(entropy=False))
        out: dict[int, list[float]] = {}
        if not is_output_rank():
            return out
        for mb, lp_BS, rows in zip(mbs, results, row_lists):
            for i, row in zip(rows, lp_BS.float().cpu()):
                # Packed rows hold the response from 0; padded rows from the prompt's end.
                packed = mb.logits_index is not None
                first = 0 if packed else len(samples[i].prompt_ids) - 1 - mb.logits_from
                out[i] = row[first : first + len(samples[i].response_ids)].tolist()
        return out

    # -- update ----------------------------------------------------------------------------

    def update(self, samples: Batch, mini_batches: list[list[int]], lr: float) -> dict[str, float]:
        """One optimizer step per mini-batch (lists of sample indices, the same on all ranks).

        Each micro-batch's loss is its sum over the aggregation unit (tokens for token-mean,
        responses otherwise) with that unit's count; megatron-core divides the gradients by
        the counts summed over the mini-batch's micro-batches and data-parallel ranks, so the
        update is the aggregate over the whole mini-batch whatever the micro-batching and DP.
        Per-token metrics (entropy, clip fraction, ratios, KL) are token means over the whole
        mini-batch too, not means of micro-batch means (which would weigh a short group's
        tokens as much as a long one's), and the mini-batches' figures are averaged.
        """
        assert self.optimizer is not None and self.loss_config is not None
        cfg = self.loss_config
        dp_group = parallel_state.get_data_parallel_group()
        # Reductions below are fp32: fp64 collectives are not supported by every backend
        # (HCCL), and sums over a mini-batch's tokens need no more.
        per_mini: list[dict[str, float]] = []
        # |training - rollout log-prob| of the sampled tokens: sum, count, max. Measured on the
        # first mini-batch, whose forward runs on exactly the weights the engine sampled with.
        mismatch = torch.zeros(3, dtype=torch.float32, device=self.device)
        has_old, has_ref = samples.old_logprobs is not None, samples.ref_logprobs is not None
        has_rollout = samples.rollout_logprobs is not None
        for step, mini in enumerate(mini_batches):
            mbs, _ = self._micro_batches(samples, mini)
            # The mini-batch's loss as the update sees it: sum and count over all ranks.
            totals = torch.zeros(2, dtype=torch.float32, device=self.device)
            compare = step == 0 and has_rollout

            def loss_fn(scores_BN2, mb, totals=totals, compare=compare):
                lp_BS, ent_BS = self._token_logprobs(scores_BN2, mb)
                mask = mb.extra["mask"]
                adv_BS = mb.extra["adv"] * mask
                old = mb.extra["old"] if has_old else lp_BS.detach()
                ref = mb.extra["ref"] if has_ref else None
                rollout = mb.extra["rollout"] if has_rollout else None
                loss, metrics = grpo_loss(lp_BS, old, ref, adv_BS, mask, ent_BS, cfg, rollout)
                local = (
                    mask.sum() if cfg.loss_agg_mode == "token-mean" else (mask.sum(-1) > 0).sum()
                )
                totals[0] += (loss * local).detach().float()
                totals[1] += local.detach().float()
                if compare:
                    diff = (lp_BS.detach() - mb.extra["rollout"]).abs() * mask
                    mismatch[0] += diff.sum().float()
                    mismatch[1] += mask.sum().float()
                    mismatch[2] = torch.maximum(mismatch[2], diff.max().float())
                return loss * local, local, (metrics, mask.sum().detach())

            for chunk in self.chunks:
                chunk.zero_grad_buffer()
            self.optimizer.zero_grad()
            results = run_schedule(self.chunks, mbs, loss_fn, False, self._scores(entropy=True))
            opt.set_lr(self.optimizer, lr)
            grad_norm = opt.step(self.optimizer)
            dist.all_reduce(totals, group=dp_group)
            figures = _mini_batch_metrics(results, dp_group, self.device)
            figures["actor/loss"] = (totals[0] / totals[1].clamp(min=1)).item()
            figures["actor/grad_norm"] = grad_norm
            per_mini.append(figures)
        out = {k: sum(f[k] for f in per_mini) / len(per_mini) for k in per_mini[0]}
        for k in MAX_METRICS:
            if k in out:
                out[k] = max(f[k] for f in per_mini)
        if has_rollout:
            dist.all_reduce(mismatch[:2], group=dp_group)
            dist.all_reduce(mismatch[2:], op=dist.ReduceOp.MAX, group=dp_group)
            out["rollout/logprob_diff_mean"] = (mismatch[0] / mismatch[1].clamp(min=1)).item()
            out["rollout/logprob_diff_max"] = mismatch[2].item()
        return out if is_output_rank() else {}


TOKEN_MEAN_METRICS = (
    "actor/clip_frac",
    "actor/ppo_kl",
    "actor/ratio_mean",
    "actor/kl",
    "actor/entropy",
    "rollout/mismatch_kl",
    "rollout_correction/weight_mean",
    "rollout_correction/corrected_frac",
)
"""Per-token metrics of :func:`grpo_loss` that are combined over micro-batches and ranks by
their token counts."""

MAX_METRICS = ("actor/ratio_max", "rollout_correction/weight_max")
"""Metrics of :func:`grpo_loss` combined by their maximum."""


def _mini_batch_metrics(
    results: list[tuple[dict[str, torch.Tensor], torch.Tensor]],
    dp_group: dist.ProcessGroup,
    device: torch.device,
) -> dict[str, float]:
    """The loss metrics of one mini-batch from its micro-batches' (metrics, tokens) on this
    rank: token-weighted means and the maxima (MAX_METRICS) over all data-parallel ranks, the mean of the
    other (per-micro-batch) figures. Empty on stages without the loss (no results); every
    rank of a data-parallel group is at the same stage, so the collectives match."""
    if not results:
        return {}
    keys = [k for k in TOKEN_MEAN_METRICS if k in results[0][0]]
    maxed = [k for k in MAX_METRICS if k in results[0][0]]
    weighted = torch.zeros(len(keys) + 1, dtype=torch.float32, device=device)
    maxima = torch.zeros(max(len(maxed), 1), dtype=torch.float32, device=device)
    for metrics, tokens in results:
        for j, k in enumerate(keys):
            weighted[j] += metrics[k].float() * tokens.float()
        weighted[-1] += tokens.float()
        for j, k in enumerate(maxed):
            maxima[j] = torch.maximum(maxima[j], metrics[k].float())
    dist.all_reduce(weighted, group=dp_group)
    dist.all_reduce(maxima, op=dist.ReduceOp.MAX, group=dp_group)
    out = {k: (weighted[j] / weighted[-1].clamp(min=1)).item() for j, k in enumerate(keys)}
    out |= {k: maxima[j].item() for j, k in enumerate(maxed)}
    rest = [k for k in results[0][0] if k not in keys and k not in maxed and k != "actor/loss"]
    for k in rest:
        out[k] = sum(float(m[k]) for m, _ in results) / len(results)
    return out
