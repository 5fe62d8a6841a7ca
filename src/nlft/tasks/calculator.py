"""Judgments of incorrect outputs: a rule-based calculator judge, and prompts for LLM judges.

The calculator judge needs no model. It re-computes every ``<<expression=value>>`` annotation of an
output (GSM8K's calculator format) with a small safe evaluator (``ast``, arithmetic only, no
``eval``), or, for outputs without annotations, every ``a op b = c`` equation written in the text; it
then compares the final answer with the reference, and writes in plain words which step is wrong and
why.
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction
from typing import Any, NamedTuple

from nlft.tasks.base import Mode, no_answer, tidy
from nlft.tasks.grading import extract_answer, normalize_number
from nlft.tasks.prompts import CORRECT_JUDGMENT, JUDGE_INSTRUCTION, render

_ANNOTATION_RE = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
_NUM = r"\$?\d[\d,]*(?:\.\d+)?%?"
# No two adjacent \s* in the pattern: ambiguous whitespace would make matching exponential.
_TERM = r"(?:\(\s*)?-?" + _NUM + r"(?:\s*\))?"
# 'a op b (op c ...) = c' written in prose; the left side needs at least one operator.
_EQUATION_RE = re.compile(
    r"(?<![\w.])(" + _TERM + r"(?:\s*[-+*/x×÷]\s*" + _TERM + r")+)\s*=\s*(-?\$?\d[\d,]*(?:\.\d+)?)"
)
# One or two words after a number, before an operator or "=": units and nouns written in an equation ("692 girls * 458
# = 24000 girls"), left out so that the equation can be checked. A lone "x" is the multiplication sign, not a word.
_UNIT_WORDS_RE = re.compile(r"(\d)((?:[ \t]+(?!x\b)[A-Za-z][A-Za-z'-]*){1,2})(?=[ \t]*(?:[-+*/×÷=]|x[ \t]))")
_BIN_OPS: dict[type, Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


class UnsafeExpression(ValueError):
    """An expression that is not plain arithmetic on numbers (or too large to compute)."""


def safe_eval(expression: str) -> Fraction:
    """Evaluate arithmetic exactly: numbers, ``+ - * / // % **``, parentheses; nothing else.

    Accepts the notations found in solutions: ``x``/``×`` for multiplication, ``÷``, ``^`` for power,
    thousands commas, ``$`` and ``%`` (as /100). Raises :class:`UnsafeExpression` for anything else.

    >>> safe_eval("48/2")
    Fraction(24, 1)
    """
    text = expression.strip().replace("$", "").replace("×", "*").replace("÷", "/").replace("^", "**")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", text)
    text = re.sub(r"(\d+(?:\.\d+)?)%", r"(\1/100)", text)
    if len(text) > 200:
        raise UnsafeExpression("expression too long")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise UnsafeExpression(f"not an arithmetic expression: {expression!r}") from None
    return _eval_node(tree.body)


def _eval_node(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(
            node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval_node(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow):
            if right.denominator != 1 or abs(right) > 64 or abs(left) > 10**6:
                raise UnsafeExpression("power too large or not an integer exponent")
            return left ** int(right)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise UnsafeExpression("division by zero")
        result = _BIN_OPS[type(node.op)](left, right)
        return Fraction(result)
    raise UnsafeExpression(f"unsupported element {type(node).__name__}")


def format_number(value: Fraction) -> str:
    """A computed value as a person writes it: ``72``, ``0.25``, ``3.333333``."""
    out = normalize_number(f"{value.numerator}/{value.denominator}")
    return out if out is not None else str(float(value))


class Step(NamedTuple):
    """One computation written in a solution: ``expression = claimed``."""

    expression: str
    claimed: str
    true_value: Fraction | None  # None when the expression cannot be evaluated


def _value_matches(true_value: Fraction, claimed: str) -> bool:
    claimed_norm = normalize_number(claimed.rstrip("%"))
    if claimed_norm is None:
        return False
    decimals = len(claimed_norm.split(".")[1]) if "." in claimed_norm else 0
    # A claimed value may be rounded or truncated to the precision it shows.
    return abs(float(true_value) - float(claimed_norm)) < 10.0 ** (-decimals) - 1e-12


def _evaluate(expression: str) -> Fraction | None:
    try:
        return safe_eval(expression)
    except (UnsafeExpression, OverflowError, ValueError):
        return None


def find_steps(text: str) -> tuple[list[Step], bool]:
    """The computations in a solution and whether they come from ``<<...>>`` annotations."""
    annotations = _ANNOTATION_RE.findall(text)
    if annotations:
        return [Step(e.strip(), v.strip(), _evaluate(e)) for e, v in annotations], True
    steps = []
    for expression, claimed in _EQUATION_RE.findall(_UNIT_WORDS_RE.sub(r"\1", text)):
        expression = expression.strip()
        # Balance a parenthesis cut off by the pattern.
        if expression.count("(") != expression.count(")"):
            expression = expression.strip("()").strip()
        steps.append(Step(expression, claimed.strip(), _evaluate(expression)))
    return steps, False


def _reference_summary(reference: str) -> str:
    steps, _ = find_steps(reference)
    shown = [f"{s.expression} = {format_number(s.true_value) if s.true_value is not None else s.claimed}"
             for s in steps]
    if not shown:
        return ""
    if len(shown) > 6:
        shown = [*shown[:5], "...", shown[-1]]
    return "; the reference computes " + ", then ".join(shown)


def _first_missing_reference_step(output: str, reference: str) -> str | None:
    """The first ``expression = value`` of the reference whose value the output never mentions."""
    mentioned = {normalize_number(n) for n in re.findall(r"-?\d[\d,]*(?:\.\d+)?", output)}
    for number, step in enumerate(find_steps(reference)[0], start=1):
        if step.true_value is None:
            continue
        value = format_number(step.true_value)
        if value not in mentioned:
            return f"{step.expression} = {value} (step {number} of the reference)"
    return None


def calculator_judgment(output: str, reference: str, gold: str, mode: Mode = "strict", *,
                        cut_off: bool = False) -> str:
    """A plain-words judgment of ``output`` against ``reference``: wrong steps and the final answer.

    Always non-empty. For a correct output whose steps all check out it is
    :data:`nlft.tasks.prompts.CORRECT_JUDGMENT`. ``mode`` is the grading in use: under
    ``"flexible"`` the final answer is the last number (as that grading reads it), so the judgment is
    about that number, never about a missing ``#### N`` line. ``cut_off``: the output stopped at the
    token limit, so an equation that ends the output is unfinished rather than wrong; it is not
    checked, and the judgment says that the response was cut off.
    """
    sentences: list[str] = []
    steps, annotated = find_steps(output)
    unfinished = cut_off and bool(steps) and not annotated and bool(
        re.search(r"=\s*-?\$?" + re.escape(steps[-1].claimed) + r"\s*$", output))
    if unfinished:
        steps = steps[:-1]  # the last equation is cut off mid-number: not a wrong step, and not an answer
    for number, step in enumerate(steps, start=1):
        if step.true_value is None:
            continue
        if not _value_matches(step.true_value, step.claimed):
            where = f"Step {number}" if annotated else f"The equation {step.expression} = {step.claimed}"
            sentences.append(f"{where} computes {step.expression} = {step.claimed}, but "
                             f"{step.expression} = {format_number(step.true_value)}."
                             if annotated else
                             f"{where} is wrong: {step.expression} = {format_number(step.true_value)}, "
                             f"not {step.claimed}.")
    predicted = extract_answer(output, mode)
    gold_norm = normalize_number(gold) or gold
    summary = _reference_summary(reference)
    if unfinished:
        sentences.append(f"The response was cut off at the token limit before it reached a final answer; the correct "
                         f"answer is {gold_norm}{summary}.")
    elif predicted is None:
        loose = extract_answer(output, "flexible") if mode == "strict" else None
        seen = f" (the last number it mentions is {loose})" if loose is not None else ""
        row = {"output_tokens": 1, "provenance": {"sampling": {"max_new_tokens": 1}}} if cut_off else {}
        sentences.append(f"{no_answer(mode, '<number>', row, seen)}; the correct answer is {gold_norm}{summary}.")
    elif normalize_number(predicted) != gold_norm:
        cut = " (the response was cut off at the token limit before it finished)" if cut_off else ""
        sentences.append(f"The final answer {predicted} does not match the correct answer {gold_norm}{cut}"
                         f"{summary}.")
        if steps and not any(s.true_value is not None and not _value_matches(s.true_value, s.claimed)
                             for s in steps):
            missing = _first_missing_reference_step(output, reference)
            sentences.insert(0, "Every computation in the response is arithmetically right, so the "
                                "mistake is in the reasoning: it computes the wrong quantities."
                             + (f" It never obtains {missing}." if missing else ""))
        elif not steps:
            sentences.insert(0, "The response shows no computation to check.")
    if not sentences:
        return CORRECT_JUDGMENT
    return tidy(" ".join(sentences))


def judge_prompt(question: str, output: str, reference: str, template: str = JUDGE_INSTRUCTION) -> str:
    """The LLM judge instruction (paper appendix A.1) filled with one example."""
    return render(template, question=question, output=output, reference=reference)


def says_correct(judgment: str | None) -> bool:
    """Whether an LLM judgment declares the response correct (or says nothing)."""
    return not judgment or not judgment.strip() or CORRECT_JUDGMENT.strip("# ").lower() in judgment.lower()
