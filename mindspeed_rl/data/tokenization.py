"""Prompt tokenisation, spread over worker processes when asked.

Prompts are rendered to text in the parent (chat templates need the full transformers
tokenizer); the workers only turn text into ids with the ``tokenizers`` library, which loads in
a fraction of a second where transformers takes several.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mindspeed_rl.errors import UserError, first_line

CHUNK = 256

_worker_tokenizer: Any = None


def load_hf_tokenizer(path: Path) -> Any:
    """The transformers tokenizer in directory ``path``."""
    from transformers import AutoTokenizer

    if not path.is_dir():
        raise UserError(f"{path}: tokenizer directory not found; fix 'tokenizer' in the config")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot load a tokenizer: {first_line(err)}") from None


def tokenizer_fingerprint(path: Path) -> str:
    """A short hash of the token -> id map of the tokenizer in ``path`` (added tokens included).

    Preprocessing records it and the trainer compares it with the policy's tokenizer: ids made
    by another tokenizer are a silently wrong training set, not an error anyone would see.
    """
    import hashlib
    import json

    if (path / "tokenizer.json").is_file():
        vocab = _fast_tokenizer(path).get_vocab(with_added_tokens=True)
    else:
        vocab = load_hf_tokenizer(path).get_vocab()
    blob = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _fast_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as err:  # the Rust library raises plain Exception
        raise UserError(f"{path / 'tokenizer.json'}: cannot load: {err}") from None


def _encode(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(prompts, add_special_tokens=False)]


def _init_worker(path: str) -> None:
    global _worker_tokenizer
    # One process per worker is the parallelism; the library's own threads would oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = _fast_tokenizer(Path(path))


def _encode_chunk(prompts: list[str]) -> list[list[int]]:
    return _encode(_worker_tokenizer, prompts)


def encode_prompts(
    prompts: Sequence[str], tokenizer_path: Path, workers: int, hf_tokenizer: Any = None
) -> Iterator[list[int]]:
    """Token ids of each prompt, in order. Templates write special tokens (BOS, turn markers)
    themselves, so the tokenizer adds none.

    With ``workers > 1`` and a ``tokenizer.json`` in ``tokenizer_path``, chunks of prompts are
    encoded in that many processes; otherwise in this process, with ``hf_tokenizer`` when the
    directory has no ``tokenizer.json``.
    """
    chunks = [list(prompts[i : i + CHUNK]) for i in range(0, len(prompts), CHUNK)]
    if not (tokenizer_path / "tokenizer.json").is_file():
        tokenizer = hf_tokenizer if hf_tokenizer is not None else load_hf_tokenizer(tokenizer_path)
        for chunk in chunks:
            yield from tokenizer(chunk, add_special_tokens=False)["input_ids"]
        return
    if workers == 1:
        tokenizer = _fast_tokenizer(tokenizer_path)
        for chunk in chunks:
            yield from _encode(tokenizer, chunk)
        return
    # spawn, not fork: the parent may hold threads (tqdm's monitor, the tokenizers pool).
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(str(tokenizer_path),)) as pool:
        for ids in pool.imap(_encode_chunk, chunks):
            yield from ids
