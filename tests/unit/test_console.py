"""The run console: library output into log files, our lines on the terminal, one-line errors,
expected CPU notices dropped."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings

from mindspeed_rl.utils.console import error_line, root_cause, shown

SCRIPT = """
import os, subprocess, sys
from pathlib import Path
from mindspeed_rl.utils.console import captured_output

log = Path(sys.argv[1])
with captured_output(log) as console:
    print("python print")
    print("python stderr", file=sys.stderr)
    os.write(1, b"c-level stdout\\n")
    os.write(2, b"c-level stderr\\n")
    subprocess.run([sys.executable, "-c", "print('child process')"], check=True)
    console.write("our line\\n")
print("after the block")
"""


def test_captured_output_sends_every_writer_to_the_log_and_ours_to_the_terminal(tmp_path):
    log = tmp_path / "logs" / "driver.log"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(log)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "our line\nafter the block\n"
    assert proc.stderr == ""
    logged = log.read_text().splitlines()
    assert sorted(logged) == sorted(
        ["python print", "python stderr", "c-level stdout", "c-level stderr", "child process"]
    )


def test_error_line_names_the_root_cause_of_a_ray_task_error():
    from ray.exceptions import RayTaskError

    cause = ValueError("rollout.max_model_len 256 is shorter than the prompt")
    err = RayTaskError("generate", "Traceback (most recent call last):\n  ...", cause)
    wrapped = err.as_instanceof_cause()
    assert root_cause(wrapped) is cause
    assert error_line(wrapped) == "ValueError: rollout.max_model_len 256 is shorter than the prompt"
    multi = RuntimeError("first line\n  detail\nlast line says what")
    assert error_line(multi) == "RuntimeError: last line says what"


def test_shown_paths_are_relative_inside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown(tmp_path / "runs" / "r1") == "runs/r1"
    assert shown("/elsewhere/x") == "/elsewhere/x"


def test_expected_cpu_notices_are_dropped_and_others_kept(monkeypatch):
    monkeypatch.setenv("MINDSPEED_RL_DEVICE", "cpu")
    from mindspeed_rl.accelerator import hide_expected_cpu_notices

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hide_expected_cpu_notices()
        warnings.warn(
            "Apex is not installed. Falling back to Torch Norm", UserWarning, stacklevel=1
        )
        warnings.warn(
            "Transformer Engine and Apex are not installed. Falling back", UserWarning, stacklevel=1
        )
        warnings.warn("something the user should see", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something the user should see"]

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("vllm.triton_utils.importing")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("Triton is installed, but doesn't include CPU backend. Disabling Triton.")
        logger.warning("KV cache is full")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["KV cache is full"]


def test_first_line_quotes_a_library_error_in_one_line():
    from mindspeed_rl.errors import first_line

    assert first_line(ValueError("  bad header\nTraceback detail\n")) == "bad header"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError("x" * 500), limit=10) == "x" * 10
