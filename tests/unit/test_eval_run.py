"""Which scorer an eval set gets, from where it came from."""

import pytest

from mindspeed_rl.eval.run import EvalData, scorer_for


def _data(name: str, family: str, handler: str | None) -> EvalData:
    return EvalData(name, family, [[1]], ["1"], None, "", handler, "somewhere")


@pytest.mark.parametrize(
    ("family", "handler", "expected"),
    [
        ("arithmetic", "generic", "gsm8k"),  # scored as its training preset scores it
        ("gsm8k", "gsm8k", "gsm8k"),
        ("countdown", "countdown", "countdown"),
        ("math500", "generic", "math"),
        ("aime24", None, "math"),
    ],
)
def test_default_scorer(family, handler, expected):
    assert scorer_for(_data(f"{family}_test", family, handler), None) == expected


def test_scorer_override_wins():
    assert scorer_for(_data("arithmetic_test", "arithmetic", "generic"), "math") == "math"
