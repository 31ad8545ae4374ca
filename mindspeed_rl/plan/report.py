"""The verdict on a :class:`MemoryPlan`, the knobs that would change it, and its tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from mindspeed_rl.plan.memory import GB, MemoryPlan, PhasePlan, PlanInput, plan_memory, total_params


@dataclass(frozen=True)
class Knob:
    """One change to the run and the plan it leads to."""

    override: str
    """The change, as a command-line override where a config key exists."""
    phase: str
    """The phase it is meant to shrink."""
    before: float
    """That phase's peak now, in bytes."""
    plan: MemoryPlan
    note: str = ""

    @property
    def after(self) -> float:
        return next(p.peak for p in self.plan.phases if p.name == self.phase)

    @property
    def fixes(self) -> bool:
        """Whether its phase fits after it (for the rollout: and vLLM can start)."""
        phase = _phase(self.plan, self.phase)
        return self.plan.phase_fits(phase) and not (self.phase == "rollout" and self.plan.problems)

    def text(self) -> str:
        """``key=value: training 160.2 -> 58.3 GB (-101.9 GB), fits`` and its note."""
        verdict = f"{self.phase} fits" if self.fixes else f"{self.phase} still too big"
        note = f" [{self.note}]" if self.note else ""
        return (
            f"{self.override}{note}: {self.phase} {self.before / GB:.1f} -> "
            f"{self.after / GB:.1f} GB ({(self.after - self.before) / GB:+.1f} GB), {verdict}"
        )


def gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


# -- knobs -----------------------------------------------------------------------------------


def _infer_tp_note(tp: int) -> str:
    from mindspeed_rl.rollout.base import RolloutConfig

    try:
        RolloutConfig(infer_tp=tp)
    except ValueError as err:
        return str(err)
    return ""


def _first_fit_or_last(
    options: list[tuple[str, PlanInput, str]], phase: str
) -> Iterator[tuple[str, PlanInput, str]]:
    """The first option whose ``phase`` fits on the device (options run from mild to strong),
    else the strongest."""
    for option in options:
        plan = plan_memory(option[1])
        if plan.phase_fits(_phase(plan, phase)) and not (phase == "rollout" and plan.problems):
            yield option
            return
    if options:
        yield options[-1]


def _phase(plan: MemoryPlan, name: str) -> PhasePlan:
    return next(p for p in plan.phases if p.name == name)


def _mini_batch(x: PlanInput) -> int:
    return x.microbatches_per_step * x.dp * x.micro_batch


def training_knobs(x: PlanInput) -> Iterator[tuple[str, PlanInput, str]]:
    """Changes that shrink the update's footprint: distributed optimizer, recompute, a
    smaller micro-batch, more tensor parallelism."""
    if not x.distributed_optimizer and x.dp > 1:
        yield "optim.use_distributed_optimizer=true", replace(x, distributed_optimizer=True), ""
    if x.recompute == "":
        yield "model.recompute_granularity=selective", replace(x, recompute="selective"), ""
    if x.recompute != "full":
        full = replace(x, recompute="full", recompute_method="uniform", recompute_num_layers=1)
        yield "model.recompute_granularity=full", full, ""
    if x.max_tokens:  # halve the token budget, down to one longest sample per pass
        budgets = []
        b = x.max_tokens // 2
        while b >= x.seq_tokens:
            budgets.append(b)
            b //= 2
        options = [
            (
                f"trainer.max_tokens_per_micro_batch={b}",
                replace(
                    x,
                    max_tokens=b,
                    micro_batch=max(1, b // x.seq_tokens),
                    microbatches_per_step=-(-_mini_batch(x) // (x.dp * max(1, b // x.seq_tokens))),
                ),
                "",
            )
            for b in budgets
        ]
    else:
        smaller = [m for m in range(x.micro_batch - 1, 0, -1) if x.micro_batch % m == 0]
        options = [
            (
                f"trainer.micro_batch_size={m}",
                replace(
                    x,
                    micro_batch=m,
                    microbatches_per_step=x.microbatches_per_step * x.micro_batch // m,
                ),
                "",
            )
            for m in smaller
        ]
    yield from _first_fit_or_last(options, "training")
    s, mini = x.spec, _mini_batch(x)
    # More TP comes with sequence parallelism (activations / TP too; MoE needs it at TP > 1).
    mlp = s.moe_ffn_hidden_size if s.is_moe else s.ffn_hidden_size
    ep_ok = [k for k in range(x.tp + 1, x.devices_per_node + 1)
             if not s.is_moe or (x.world // (k * x.pp)) % x.ep == 0]  # fmt: skip
    tps = [
        k
        for k in ep_ok
        if not (s.num_attention_heads % k or s.num_kv_heads % k or mlp % k)
        and x.world % (k * x.pp) == 0
        and (x.max_tokens or mini % (x.world // (k * x.pp) * x.micro_batch) == 0)
    ]
    yield from _first_fit_or_last(
        [
            (
                f"model.tp={k} model.sequence_parallel=true",
                replace(
                    x,
                    tp=k,
                    sequence_parallel=True,
                    microbatches_per_step=-(-mini // (x.world // (k * x.pp) * x.micro_batch)),
                ),
                "convert the checkpoint at this TP",
            )
            for k in tps
        ],
        "training",
    )


def rollout_knobs(x: PlanInput) -> Iterator[tuple[str, PlanInput, str]]:
    """Changes that shrink the rollout's footprint: inference TP, vLLM's memory share,
    training parameters offloaded while sampling."""
    s = x.spec
    tps = [
        k
        for k in range(x.infer_tp + 1, x.devices_per_node + 1)
        if s.num_attention_heads % k == 0
        and (s.num_kv_heads % k == 0 or k % s.num_kv_heads == 0)
        and (x.rollout_workers or x.world) % k == 0
    ]
    yield from _first_fit_or_last(
        [(f"rollout.infer_tp={k}", replace(x, infer_tp=k), _infer_tp_note(k)) for k in tps],
        "rollout",
    )
    if x.on_accelerator and x.device_memory_gb > 0:
        steps = int(round(x.gpu_memory_utilization * 20))
        shares = [n / 20 for n in range(steps - 1, 1, -1)]
        yield from _first_fit_or_last(
            [
                (f"rollout.gpu_memory_utilization={u:g}", replace(x, gpu_memory_utilization=u), "")
                for u in shares
            ],
            "rollout",
        )
    if x.on_accelerator and not x.offload_params and not x.rollout_workers:
        yield (
            "offload training params during rollout",
            replace(x, offload_params=True),
            "no config key yet",
        )


KNOBS: dict[str, Callable[[PlanInput], Iterator[tuple[str, PlanInput, str]]]] = {
    "training": training_knobs,
    "rollout": rollout_knobs,
}


def knobs(plan: MemoryPlan) -> list[Knob]:
    """Single changes that lower a phase that does not fit (or that vLLM cannot start in),
    strongest first."""
    out = []
    for phase in plan.phases:
        if plan.phase_fits(phase) and not (phase.name == "rollout" and plan.problems):
            continue
        for override, x, note in KNOBS[phase.name](plan.input):
            knob = Knob(override, phase.name, phase.peak, plan_memory(x), note)
            if knob.after < knob.before or (plan.problems and not knob.plan.problems):
                out.append(knob)
    return sorted(out, key=lambda k: (not k.fixes, k.after - k.before))


def _excess(plan: MemoryPlan) -> float:
    over = sum(max(0.0, p.peak - plan.device_bytes) for p in plan.phases)
    return over + (1e18 if plan.problems else 0.0)


def combination(plan: MemoryPlan, limit: int = 5) -> tuple[list[str], MemoryPlan]:
    """Knobs applied one after another, each the one that leaves the least excess, until the
    run fits (or nothing helps): the overrides and the plan they lead to."""
    chosen: list[str] = []
    while not plan.fits and len(chosen) < limit:
        options = [k for k in knobs(plan) if k.override not in chosen]
        if not options:
            break
        best = min(options, key=lambda k: _excess(k.plan))
        if _excess(best.plan) >= _excess(plan):
            break
        chosen.append(best.override + (f" [{best.note}]" if best.note else ""))
        plan = best.plan
    return chosen, plan


# -- verdict ---------------------------------------------------------------------------------


def verdict(plan: MemoryPlan) -> str:
    """One line: fits, or what does not and its largest term."""
    x = plan.input
    if x.device_memory_gb <= 0:
        return f"peak {gb(plan.peak)} ({plan.peak_phase.name}); no device size given"
    if plan.fits:
        return f"fits: peak {gb(plan.peak)} ({plan.peak_phase.name}) of {x.device_memory_gb:g} GB"
    parts = [
        f"{p.name} {gb(p.peak)} (largest: {p.largest.name} {gb(p.largest.bytes)})"
        for p in plan.phases
        if not plan.phase_fits(p)
    ]
    return f"does not fit on {x.device_memory_gb:g} GB: " + "; ".join([*parts, *plan.problems])


def refusal(plan: MemoryPlan, config_name: str) -> str:
    """The one-line start-up refusal of a run that will not fit."""
    return (
        f"{verdict(plan)}; see `python cli/plan.py --config-name {config_name}` for the knobs "
        "that fix it (resources.device_memory_gb=0 skips this check)"
    )


# -- tables ----------------------------------------------------------------------------------


def _cell(term) -> str:
    return gb(term.bytes) if term.on_device else f"({term.where})"


def rows(plan: MemoryPlan) -> list[list[str]]:
    """[term, training, rollout, notes] for every term of either phase, then the peaks."""
    names: list[str] = []
    for phase in plan.phases:
        names += [t.name for t in phase.terms if t.name not in names]
    out = []
    for name in names:
        cells, notes = [], []
        for phase in plan.phases:
            term = next((t for t in phase.terms if t.name == name), None)
            cells.append(_cell(term) if term else "")
            if term and term.detail and term.detail not in notes:
                notes.append(term.detail)
        out.append([name, *cells, "; ".join(notes)])
    peaks = [gb(p.peak) for p in plan.phases]
    stage = [f"stage {p.stage}" for p in plan.phases if plan.input.pp > 1]
    out.append(["peak", *peaks, ", ".join(f"{p.name} on {s}" for p, s in zip(plan.phases, stage))])
    return out


def header(plan: MemoryPlan, title: str) -> str:
    """What is planned: the model, the layout, the device."""
    x, s = plan.input, plan.input.spec
    device = f"{x.device_memory_gb:g} GB devices" if x.device_memory_gb > 0 else "device size unset"
    where = "accelerator" if x.on_accelerator else "CPU"
    return (
        f"{title}: {s.family} {total_params(s) / 1e9:.2f}B params, {x.world} ranks = "
        f"TP{x.tp} x PP{x.pp} x DP{x.dp}{f' (EP{x.ep})' if x.ep > 1 else ''}, "
        + (f"+ {x.rollout_workers} generation-only ranks, " if x.rollout_workers else "")
        + f"infer TP{x.infer_tp}, {device} ({where})"
    )


def render_text(plan: MemoryPlan, title: str) -> str:
    """The plan as the CLI prints it: header, table, verdict, knobs."""
    table = [["", *[p.name for p in plan.phases], ""], *rows(plan)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    lines = [header(plan, title), ""]
    for r in table:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:])]
        lines.append(("  ".join(cells) + ("  " + r[-1] if r[-1] else "")).rstrip())
    lines += ["", verdict(plan), checkpoint_line(plan)]
    lines += [line] if (line := host_line(plan)) else []
    lines += _knob_lines(plan, bullet="  ")
    return "\n".join(lines) + "\n"


def host_line(plan: MemoryPlan) -> str | None:
    """Host memory the rollout's offload needs (optimizer state, and the training params with
    rollout.offload_params) per device and per node; None on CPU, where nothing moves."""
    rollout = next((p for p in plan.phases if p.name == "rollout"), None)
    if rollout is None or not plan.input.on_accelerator or plan.input.rollout_workers:
        return None  # (generation-only ranks: the training ranks never hand over their device)
    per_device = sum(t.bytes for t in rollout.terms if t.where == "host")
    node = plan.input.devices_per_node
    line = (f"host memory during rollout: {gb(per_device)} per device offloaded "
            f"({', '.join(t.name for t in rollout.terms if t.where == 'host')}), "
            f"{gb(per_device * node)} per node of {node}, on top of what the processes use")  # fmt: skip
    if plan.input.pin_host_memory:
        optimizer = sum(
            t.bytes for t in rollout.terms if t.where == "host" and t.name == "optimizer state"
        )
        line += (f"; {gb(optimizer * node)} per node of it page-locked for the whole run "
                 "(rollout.pin_host_memory)")  # fmt: skip
    return line


def checkpoint_line(plan: MemoryPlan) -> str:
    """The disk one save takes (and what trainer.keep_checkpoints bounds)."""
    from mindspeed_rl.plan.memory import checkpoint_bytes

    weights, optimizer = checkpoint_bytes(plan.input)
    return (f"checkpoint: {gb(weights + optimizer)} per save on disk (weights {gb(weights)}, "
            f"optimizer state {gb(optimizer)}); trainer.keep_checkpoints bounds how many stay")  # fmt: skip


def _knob_lines(plan: MemoryPlan, bullet: str) -> list[str]:
    if plan.fits or plan.input.device_memory_gb <= 0:
        return []
    found = knobs(plan)
    lines = ["knobs (each alone):"] + [f"{bullet}{k.text()}" for k in found]
    chosen, after = combination(plan)
    if not any(k.plan.fits for k in found) and chosen:
        state = "fits" if after.fits else "still does not fit"
        lines.append(f"together: {', '.join(chosen)} -> peak {gb(after.peak)}, {state}")
    return lines


def render_markdown(plan: MemoryPlan, title: str) -> str:
    """The plan as a Markdown section body (for docs/plan.md)."""
    lines = [header(plan, title).replace("|", "\\|"), ""]
    lines.append("| | " + " | ".join(p.name for p in plan.phases) + " | notes |")
    lines.append("|---|" + "---:|" * len(plan.phases) + "---|")
    for r in rows(plan):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    lines += ["", f"**{verdict(plan)}**", "", checkpoint_line(plan)]
    lines += ["", line] if (line := host_line(plan)) else []
    knob_lines = _knob_lines(plan, bullet="- ")
    if knob_lines:
        lines += ["", *[line if line.startswith("- ") else line for line in knob_lines]]
    return "\n".join(lines) + "\n"
