"""Math accuracy on competition-style answers rewritten the ways models write them.

Each gold answer is rewritten (\\dfrac / \\frac / a/b, \\left \\right dropped, "x = ...", "5.0",
with and without \\boxed and <answer> tags) and must be accepted; a changed digit and the
answers of other problems must be rejected.
"""

import re

import pytest

from mindspeed_rl.rewards.math import math_accuracy

# Gold answers as they appear in competition-math datasets, with extra spellings that cannot
# be derived mechanically.
GOLDS: dict[str, list[str]] = {
    "5": ["5", "5.0", "x = 5", "5."],
    "-3": ["-3", "x=-3", "-3.0"],
    "204": ["204"],
    "1000": ["1,000", "1{,}000"],
    "0.25": ["\\frac{1}{4}", "1/4", ".25"],
    "\\frac{1}{2}": ["\\dfrac{1}{2}", "1/2", "0.5", "\\tfrac12", "\\frac12"],
    "-\\frac{3}{4}": ["-\\dfrac{3}{4}", "-3/4", "-0.75", "\\frac{-3}{4}"],
    "\\frac{7}{16}": ["\\dfrac{7}{16}", "7/16"],
    "\\frac{\\sqrt{3}}{2}": ["\\dfrac{\\sqrt{3}}{2}", "\\sqrt{3}/2", "\\frac{\\sqrt3}{2}"],
    "2\\sqrt{5}": ["2 \\sqrt{5}", "2\\sqrt5", "\\sqrt{20}"],
    "\\sqrt{13}": ["\\sqrt{13}", "\\sqrt {13}"],
    "\\left( 3, \\frac{\\pi}{2} \\right)": [
        "(3, \\frac{\\pi}{2})",
        "(3, \\pi/2)",
        "(3,\\dfrac{\\pi}{2})",
    ],
    "(1,-2)": ["(1, -2)", "\\left(1, -2\\right)"],
    "\\left( -\\frac{1}{3}, \\frac{2}{3} \\right)": [
        "(-1/3, 2/3)",
        "\\left(-\\dfrac{1}{3}, \\dfrac{2}{3}\\right)",
    ],
    "[-2,7]": ["[-2, 7]", "\\left[ -2, 7 \\right]"],
    "(-\\infty,3)": ["(-\\infty, 3)", "\\left(-\\infty,3\\right)"],
    "(-4,4]": ["(-4, 4]"],
    "x^2+7x+10": ["x^2 + 7x + 10", "(x+2)(x+5)"],
    "2x-5": ["2x - 5", "-5+2x"],
    "10\\%": ["10\\%", "10", "10%"],
    "45^\\circ": ["45", "45^{\\circ}", "45°"],
    "\\$18.90": ["18.90", "\\$18.90", "18.9"],
    "\\frac{9\\pi}{4}": ["\\dfrac{9\\pi}{4}", "9\\pi/4", "\\frac{9}{4}\\pi"],
    "6\\pi": ["6\\pi", "6 \\pi"],
    "\\text{(C)}": ["(C)", "C", "\\text{(C)}", "\\textbf{(C)}"],
    "\\text{Evelyn}": ["Evelyn", "\\text{Evelyn}"],
    "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}": ["\\begin{pmatrix}1\\\\-2\\end{pmatrix}"],
    "1, -2": ["-2, 1", "1,-2"],
    "12.5": ["12.5", "\\frac{25}{2}", "25/2"],
    "4\\sqrt{3}": ["4\\sqrt{3}", "\\sqrt{48}"],
    "\\frac{27}{4}": ["\\dfrac{27}{4}", "27/4", "6.75"],
    "y = 2x + 3": ["y=2x+3", "y = 3 + 2x"],
    "\\infty": ["\\infty"],
    "59049": ["59049", "59,049"],
    # AMC copies that store answers as JSON numbers: the label is written out as "27.0".
    "27.0": ["27", "27.0", "x = 27"],
}


def _mechanical_rewrites(gold: str) -> list[str]:
    rewrites = [gold, gold.replace("\\frac", "\\dfrac")]
    rewrites.append(re.sub(r"\\(left|right)", "", gold))
    rewrites.append(re.sub(r"\\frac\{(-?\d+)\}\{(\d+)\}", r"\1/\2", gold))
    if "=" not in gold and "," not in gold and "text" not in gold:
        rewrites.append(f"x = {gold}")
    if re.fullmatch(r"-?\d+", gold):
        rewrites.append(f"{gold}.0")
    return list(dict.fromkeys(rewrites))


def _wraps(answer: str) -> list[str]:
    return [
        f"<think>work</think> <answer>{answer}</answer>",
        f"<think>work</think> <answer>\\boxed{{{answer}}}</answer>",
        f"<think>work</think> <answer>The answer is $\\boxed{{{answer}}}$.</answer>",
        f"Step by step... so the final answer is \\boxed{{{answer}}}.",
    ]


def _change_a_digit(gold: str) -> str:
    digits = [m.start() for m in re.finditer(r"\d", gold)]
    i = digits[-1]
    return gold[:i] + str((int(gold[i]) + 1) % 10) + gold[i + 1 :]


@pytest.mark.parametrize("gold", list(GOLDS))
def test_accepts_rewritten_answers(gold):
    for answer in dict.fromkeys(_mechanical_rewrites(gold) + GOLDS[gold]):
        for response in _wraps(answer):
            score = math_accuracy(response, gold)
            assert score.value == 1.0, (gold, response, score)


@pytest.mark.parametrize("gold", [g for g in GOLDS if re.search(r"\d", g)])
def test_rejects_a_changed_digit(gold):
    changed = _change_a_digit(gold)
    for response in _wraps(changed):
        assert math_accuracy(response, gold).value == 0.0, (gold, response)


@pytest.mark.parametrize("index", range(len(GOLDS)))
def test_rejects_other_problems_answers(index):
    golds = list(GOLDS)
    gold = golds[index]
    for other in (golds[(index + k) % len(golds)] for k in (1, 2, 5)):
        for response in _wraps(other)[:2]:
            assert math_accuracy(response, gold).value == 0.0, (gold, response)


def test_bare_latex_in_answer_tags_is_read_whole():
    # math-verify alone reads this as "3", the first number it can find.
    response = "<think>polar form</think><answer>\\left( 3, \\frac{\\pi}{2} \\right)</answer>"
    assert math_accuracy(response, "\\left( 3, \\frac{\\pi}{2} \\right)").value == 1.0
    assert math_accuracy(response, "3").value == 0.0


def test_no_answer_reasons():
    assert math_accuracy("I think it is 5", "5").reason == "no answer"
    assert math_accuracy("<answer> </answer>", "5").reason == "empty answer"
    assert math_accuracy("<answer>" + "1" * 1000 + "</answer>", "5").reason == "answer too long"
    assert math_accuracy("<answer>6</answer>", "5").reason == "wrong answer"


def test_words_are_not_products_of_symbols():
    assert math_accuracy("<answer>Nevely</answer>", "\\text{Evelyn}").value == 0.0


def test_only_the_response_counts():
    # A \boxed{} in the prompt is never seen: scorers get the response text alone.
    assert math_accuracy("I am not sure.", "5").value == 0.0


def test_never_raises_on_garbage():
    for response in [
        "<answer>\\frac{</answer>",
        "<answer>}}}{{{</answer>",
        "\\boxed{\\sqrt{}}",
        "\x00\xff",
    ]:
        assert math_accuracy(response, "5").value == 0.0
    assert math_accuracy("<answer>5</answer>", "\\frac{").value == 0.0


def test_works_off_the_main_thread():
    # math-verify's default timeouts use signal.alarm, which fails outside the main thread
    # (as in a Ray actor); the scorer turns them off and the pool enforces time limits.
    from concurrent.futures import ThreadPoolExecutor

    response = "<answer>\\left( 3, \\frac{\\pi}{4} \\right)</answer>"
    with ThreadPoolExecutor(1) as pool:
        score = pool.submit(math_accuracy, response, "(3, \\pi/4)").result()
    assert score.value == 1.0, score


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        # The whole answer wrapped in \text{}, or a bare unit in words.
        ("\\text{181 dollars}", "181"),
        ("22 square units", "22"),
        ("\\text{437 cm^2}", "437"),
        # An inequality in one variable is the interval it describes.
        ("x \\le -2", "(-\\infty, -2]"),
        ("x > 3", "(3,\\infty)"),
        ("-2 < x \\leq 5", "(-2,5]"),
        # A column vector in either bracket style; \over; \displaystyle.
        ("\\begin{bmatrix} 3 \\\\ 9 \\end{bmatrix}", "\\begin{pmatrix} 3 \\\\ 9 \\end{pmatrix}"),
        ("{3 \\over 4}", "\\frac{3}{4}"),
        ("\\displaystyle\\frac{3}{4}", "0.75"),
        ("x = 1 \\text{ or } x = -2", "-2, 1"),
        ("\\$1,234.50", "\\$1234.50"),
    ],
)
def test_accepts_model_spellings(answer, gold):
    for response in _wraps(answer):
        assert math_accuracy(response, gold).value == 1.0, (gold, response)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("5 pi", "5"),  # "pi" is not a unit
        ("x < -2", "(-\\infty, -2]"),  # open where the interval is closed
        ("x \\ge 3", "(3,\\infty)"),
        ("-2 \\le x \\leq 5", "(-2,5]"),
        ("1,2345", "12345"),  # not a thousands separator: a pair of numbers
        ("3.14", "\\pi"),  # an approximation is not the value
        ("\\text{182 dollars}", "181"),
        ("\\begin{bmatrix} 9 \\\\ 3 \\end{bmatrix}", "\\begin{pmatrix} 3 \\\\ 9 \\end{pmatrix}"),
    ],
)
def test_rejects_near_misses(answer, gold):
    for response in _wraps(answer):
        assert math_accuracy(response, gold).value == 0.0, (gold, response)


def test_bench_case_set_slice():
    # Two random instances of every kind of bench/math_equivalence.py's case set: the bench's
    # figures (recall 1.0, no false accepts at its default size) must not regress.
    from bench.math_equivalence import SHAPES, make_cases

    wrong = [
        (case.gold, case.answer, shape)
        for case in make_cases(per_kind=2, seed=3)
        for shape, wrap in SHAPES.items()
        if (math_accuracy(wrap(case.answer), case.gold).value == 1.0) != case.equivalent
    ]
    assert not wrong, wrong[:10]


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("The final answer is \\sqrt{51}", "\\sqrt{51}"),
        ("The final answer is (3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("The final answer is x^3+3x-6", "x^3+3x-6"),
        ("Answer: \\frac{3}{4}", "\\frac{3}{4}"),
        ("Therefore, the answer is: 12", "12"),
    ],
)
def test_bare_latex_after_a_lead_in_inside_the_tags(answer, label):
    assert math_accuracy(f"<think>...</think> <answer>{answer}</answer>", label).value == 1.0


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("The final answer is 49\\sqrt{2}", "49"),  # math-verify alone reads the first number
        ("The final answer is x^3+3x+6", "x^3+3x-6"),
        ("Answer: (2, 3)", "(3, 2)"),
        ("The answer is \\text{not } 5", "5"),
    ],
)
def test_a_lead_in_does_not_make_a_wrong_answer_right(answer, label):
    assert math_accuracy(f"<think>...</think> <answer>{answer}</answer>", label).value == 0.0
