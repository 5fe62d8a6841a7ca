"""The study's statistics as pure functions: the paired sign-flip test over questions, and Holm's adjustment.

Two arms are compared on the same held-out questions over several seeds. Each seed trains on its own draw
of training data, but every seed is scored on the same questions, so a question's results across seeds
are not independent. The test therefore treats the *question* as the unit: for question q the
difference ``d_q = sum_s (a_qs - b_qs)`` (a_qs = 1 when arm a answers q right in seed s) combines the
seeds, and under the null hypothesis that the two arms are exchangeable on every question each ``d_q``
is as likely to have either sign. The exact two-sided p-value is the share of the ``2^Q`` sign
assignments whose ``|sum|`` is at least the observed one, computed by dynamic programming over the
possible sums (no sampling).
"""

from __future__ import annotations

from collections.abc import Sequence


def sign_flip_p(diffs: Sequence[int]) -> float:
    """Exact two-sided p-value of the paired sign-flip test on integer differences.

    Args:
        diffs: one integer per question (e.g. seeds won by arm a minus seeds won by arm b); zeros carry no
            information and drop out.

    Returns:
        ``P(|sum_q e_q |d_q|| >= |sum_q d_q|)`` with independent uniform signs ``e_q`` (1.0 when every
        difference is 0).

    >>> sign_flip_p([1, 1, 1])  # 2 of the 8 sign patterns reach |3|
    0.25
    """
    sizes = [abs(int(d)) for d in diffs if d]
    observed = abs(sum(int(d) for d in diffs))
    if not sizes:
        return 1.0
    total = sum(sizes)
    counts = [0] * (2 * total + 1)  # counts[s + total]: sign patterns with sum s (exact integers)
    counts[total] = 1
    for size in sizes:
        nxt = [0] * len(counts)
        for i, c in enumerate(counts):
            if c:
                nxt[i + size] += c
                nxt[i - size] += c
        counts = nxt
    extreme = sum(c for i, c in enumerate(counts) if abs(i - total) >= observed)
    return extreme / 2 ** len(sizes)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values, in their order.

    The k-th smallest of m p-values is multiplied by ``m - k + 1``; adjusted values are made
    non-decreasing in that order and capped at 1, so rejecting ``p_holm < alpha`` controls the
    family-wise error rate at ``alpha``.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return [round(p, 12) for p in adjusted]


def paired_counts(a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]]) -> tuple[list[int], int, int]:
    """Per-question differences and the gained / lost counts over seeds.

    Args:
        a, b: ``[seed][question]`` correctness of two arms, the questions in the same order.

    Returns:
        ``(diffs, gained, lost)``: ``diffs[q] = sum_s a[s][q] - b[s][q]``; ``gained`` counts the (seed,
        question) pairs right under a and wrong under b, ``lost`` the reverse.
    """
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        raise ValueError("the two arms must have the same seeds and questions")
    questions = len(a[0]) if a else 0
    diffs = [sum(int(a[s][q]) - int(b[s][q]) for s in range(len(a))) for q in range(questions)]
    gained = sum(1 for s in range(len(a)) for q in range(questions) if a[s][q] and not b[s][q])
    lost = sum(1 for s in range(len(a)) for q in range(questions) if b[s][q] and not a[s][q])
    return diffs, gained, lost
