"""The transfer dock hands out only what is ready, column by column."""

from __future__ import annotations

import pytest

from mindspeed_rl.trainer.transfer_dock import TransferDock


def test_columns_fill_independently_and_report_readiness():
    dock = TransferDock(4, ["response", "reward"])
    assert dock.ready("response") == [] and not dock.all_ready("response")
    dock.put("response", [2, 0], ["c", "a"])
    assert dock.ready("response") == [0, 2]
    assert dock.get("response", [0, 2]) == ["a", "c"]
    assert dock.ready("reward") == []
    dock.put("response", [1, 3], ["b", "d"])
    assert dock.all_ready("response") and dock.get("response") == ["a", "b", "c", "d"]


def test_reading_unready_samples_or_unknown_columns_fails():
    dock = TransferDock(2, ["reward"])
    dock.put("reward", [0], [1.0])
    with pytest.raises(ValueError, match=r"not ready for samples \[1\]"):
        dock.get("reward")
    with pytest.raises(KeyError, match="no column 'advantage'"):
        dock.put("advantage", [0], [0.5])
    with pytest.raises(ValueError, match="2 indices but 1 values"):
        dock.put("reward", [0, 1], [1.0])
