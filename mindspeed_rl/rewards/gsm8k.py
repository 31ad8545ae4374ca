"""GSM8K accuracy: the last number of the final answer against the number after ``####``."""

from __future__ import annotations

from mindspeed_rl.rewards.base import NO_ANSWER, WRONG, Score
from mindspeed_rl.rewards.extract import extract_answer, last_number, plain_number

GSM8K_MARK = "####"
# An answer longer than this is not a number with its unit; skip the scan.
MAX_ANSWER_CHARS = 200


def gsm8k_label_number(label: str) -> str | None:
    """The ground-truth number as written: the text after ``####`` when present, commas kept."""
    text = label.rsplit(GSM8K_MARK, 1)[-1].strip()
    return text or None


def _response_answer(response: str) -> str | None:
    answer = extract_answer(response)
    if answer is None and GSM8K_MARK in response:
        answer = response.rsplit(GSM8K_MARK, 1)[-1].strip()
    return answer


def gsm8k_accuracy(response: str, label: str) -> Score:
    """1.0 if the last number in the response's final answer equals the label's number.

    Commas, currency signs and units around the number are ignored (``$1,200.00`` == ``1200``).
    """
    try:
        gold_text = gsm8k_label_number(label)
        gold = plain_number(gold_text.replace("$", "")) if gold_text else None
        if gold is None:
            return Score(0.0, "label is not a number")
        answer = _response_answer(response)
        if answer is None:
            return Score(0.0, NO_ANSWER)
        if len(answer) > MAX_ANSWER_CHARS:
            return Score(0.0, "answer too long")
        number = last_number(answer)
        if number is None:
            return Score(0.0, "no number in answer")
        return Score(1.0) if number == gold else Score(0.0, WRONG)
    except Exception as err:  # a scorer never raises on model output
        return Score(0.0, f"error: {type(err).__name__}")
