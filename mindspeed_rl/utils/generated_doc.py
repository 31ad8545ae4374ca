"""The command line of a generated document (docs/config.md, docs/plan.md): write it, or
with ``--check`` exit 1 when the committed file is missing or stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def generated_doc_main(
    prog: str,
    description: str,
    render: Callable[[], str],
    default_out: Path,
    regenerate: str,
    argv: list[str] | None = None,
) -> int:
    """Render the document and write it to ``--out`` (default ``default_out``), or compare."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    shown_default = default_out.relative_to(REPO_ROOT)
    parser.add_argument("--out", type=Path, default=default_out, help=f"default: {shown_default}")
    args = parser.parse_args(argv)
    text = render()
    shown = args.out.resolve()
    shown = shown.relative_to(REPO_ROOT) if shown.is_relative_to(REPO_ROOT) else shown
    if args.check:
        current = args.out.read_text() if args.out.is_file() else None
        if current != text:
            state = "is missing" if current is None else "is out of date"
            print(f"{prog}: {shown} {state}; run `{regenerate}`", file=sys.stderr)
            return 1
        print(f"{prog}: {shown} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"{prog}: wrote {shown}")
    return 0
