"""Property-based tests (hypothesis): grading, the NLFT scales and loss, the JSONL helpers.

Each property is a statement of the method spec (docs/nlft-method.md) or of a documented guarantee,
checked on many generated inputs rather than a few hand-picked ones.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nlft.method.loss import nlft_loss
from nlft.method.scales import batch_token_scales, correct_token_scales, incorrect_token_scales
from nlft.tasks.grading import extract_answer, is_correct, normalize_number, reft_reward
from nlft.utils.files import DataError, append_jsonl, iter_jsonl, read_jsonl, repair_torn_tail

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ---------------------------------------------------------------------------------------------------
# Grading: extraction and normalisation

integers = st.integers(min_value=-10**12, max_value=10**12)
# Text that never contains a digit, '#' or '$': prose around the answer.
prose = st.text(st.characters(blacklist_categories=("Nd", "No", "Nl", "Cs"), blacklist_characters="#$.,/-"),
                 max_size=40)


@FAST
@given(n=integers)
def test_normalize_integer_forms_agree(n):
    """1234567, 1,234,567, $1,234,567, 1234567.0 and 1234567.00 all normalise to the same string."""
    plain = str(n)
    sign = "-" if n < 0 else ""
    forms = [plain, f"{n:,}", f"{sign}${abs(n):,}", f"{n}.0", f"{n}.00", f" {n} "]
    assert {normalize_number(f) for f in forms} == {plain}


@FAST
@given(n=integers, k=st.integers(min_value=1, max_value=6))
def test_normalize_finite_decimals_are_exact(n, k):
    """A decimal with at most 6 places is written back exactly (trailing zeros dropped)."""
    value = Fraction(n, 10**k)
    text = f"{float(value):.{k}f}" if abs(n) < 10**9 else None
    assume(text is not None)
    out = normalize_number(text)
    assert out is not None
    assert Fraction(out) == value
    assert out == normalize_number(out)  # idempotent
    assert not out.endswith("0") or "." not in out


@FAST
@given(text=st.text(max_size=60))
def test_normalize_and_extract_never_raise(text):
    """Arbitrary text yields None or a canonical number string, never an exception."""
    out = normalize_number(text)
    if out is not None:
        float(out)
        assert normalize_number(out) == out
    for mode in ("strict", "flexible"):
        got = extract_answer(text, mode)
        assert got is None or normalize_number(got) == got


@FAST
@given(before=prose, after=prose, n=integers, decoy=integers)
def test_strict_reads_the_number_after_the_last_hashes(before, after, n, decoy):
    """``#### decoy ... #### n`` -> n; the last ``####`` wins whatever prose surrounds it."""
    text = f"{before} #### {decoy}\n{before}\n#### {n:,}{after}"
    assert extract_answer(text, "strict") == str(n)
    assert is_correct(text, str(n))
    assert is_correct(text, f"{n}.0")
    assert not is_correct(text, str(n + 1))
    assert reft_reward(text, str(n)) == 1.0
    assert reft_reward(text, str(n + 1)) == 0.1


@FAST
@given(before=prose, n=integers)
def test_strict_needs_hashes_flexible_takes_last_number(before, n):
    text = f"{before} 17 apples and then {n}{before}"
    assert extract_answer(text, "strict") is None
    assert reft_reward(text, str(n)) == 0.0
    assert extract_answer(text, "flexible") == str(n)


@FAST
@given(num=st.integers(min_value=-10**6, max_value=10**6), den=st.integers(min_value=1, max_value=10**4))
def test_fractions_normalise_to_their_value(num, den):
    out = normalize_number(f"{num}/{den}")
    assert out is not None
    assert math.isclose(float(out), num / den, rel_tol=1e-6, abs_tol=1e-6)


def test_huge_or_exponent_numbers_are_not_numbers_nor_crashes():
    """Hand-picked inputs that once raised or took many seconds: rejected (None), promptly."""
    assert extract_answer("#### " + "1" * 400 + "/3") is None
    assert extract_answer("#### " + "9" * 5000) is None
    assert normalize_number("1e10000000") is None
    assert normalize_number("1e5") == "100000"


# ---------------------------------------------------------------------------------------------------
# Scales (paper Eq. 1-4) and the loss (Eq. 5)

# Probabilities including the exact endpoints 0 and 1 and values on both sides of the thresholds.
probs = st.one_of(st.sampled_from([0.0, 1.0, 0.95, 0.01, 1e-12, 1 - 1e-7]),
                  st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
prob_lists = st.lists(probs, min_size=1, max_size=24)


@FAST
@given(p=prob_lists, data=st.data())
def test_correct_scales_ranges(p, data):
    """Saliency scales in [1, 2]; sub-saliency and irrelevant in [0, 1]; all finite."""
    sub = torch.tensor(data.draw(st.lists(st.booleans(), min_size=len(p), max_size=len(p))))
    p_std = torch.tensor(p)
    scales, saliency = correct_token_scales(p_std, sub)
    assert torch.isfinite(scales).all()
    assert torch.equal(saliency, p_std > 0.95)
    assert ((scales[saliency] >= 1) & (scales[saliency] <= 2)).all()
    assert ((scales[~saliency] >= 0) & (scales[~saliency] <= 1)).all()


@FAST
@given(p=prob_lists)
def test_sub_saliency_weighs_at_least_irrelevant(p):
    """With c2 < c3, a phrase token weighs at least as much as an irrelevant token of equal P."""
    p_std = torch.tensor(p)
    as_sub, _ = correct_token_scales(p_std, torch.ones_like(p_std, dtype=torch.bool))
    as_irr, _ = correct_token_scales(p_std, torch.zeros_like(p_std, dtype=torch.bool))
    assert (as_sub >= as_irr).all()


@FAST
@given(p=prob_lists, sub=st.booleans(), c1=st.floats(0.5, 8), c2=st.floats(0.05, 0.5), gap=st.floats(0.05, 1))
def test_correct_scales_non_decreasing_in_p_std(p, sub, c1, c2, gap):
    """Within a class (all phrase tokens, or none), a larger P_std never gets a smaller scale."""
    p_std = torch.tensor(sorted(p))
    mask = torch.full_like(p_std, sub, dtype=torch.bool)
    scales, _ = correct_token_scales(p_std, mask, c1=c1, c2=c2, c3=c2 + gap)
    assert (scales[1:] >= scales[:-1]).all(), (p_std, scales)


@FAST
@given(pb=prob_lists, data=st.data(), irrelevant=st.sampled_from(["zero", "reference"]))
def test_incorrect_scales_ranges(pb, data, irrelevant):
    """Erroneous tokens: [1, 2] (strictly inside mathematically; float32 can round to an end), or 0 when more than
    max_error_fraction (0.5) of the output is erroneous (excluded); the others: 0, or sqrt(P_std) in "reference"
    mode."""
    n = len(pb)
    ps = data.draw(st.lists(probs, min_size=n, max_size=n))
    pj = data.draw(st.lists(probs, min_size=n, max_size=n))
    p_base, p_std, p_judge = torch.tensor(pb), torch.tensor(ps), torch.tensor(pj)
    scales, err = incorrect_token_scales(p_base, p_std, p_judge, irrelevant=irrelevant)
    assert torch.isfinite(scales).all()
    if err.float().mean() > 0.5:  # entirely wrong: excluded
        assert (scales == 0).all()
        return
    assert ((scales[err] >= 1) & (scales[err] <= 2)).all()
    others = scales[~err]
    sqrt_std = p_std[~err].sqrt()
    if irrelevant == "zero":
        assert (others == 0).all()
    else:
        assert ((others == 0) | torch.isclose(others, sqrt_std)).all()
    # The erroneous rule itself, recomputed in float64 away from ties.
    r1 = p_judge.double() / p_base.double().clamp(min=1e-12)
    r2 = p_judge.double() / p_std.double().clamp(min=1e-12)
    clear = ((r1 - 1.5).abs() > 1e-4) & ((r2 - 1.5).abs() > 1e-4) & ((p_judge.double() - 0.01).abs() > 1e-6)
    expected = (r1 > 1.5) & (r2 > 1.5) & (p_judge.double() > 0.01)
    assert torch.equal(err[clear], expected[clear])


@FAST
@given(r1=st.lists(st.floats(1.5 + 1e-3, 10.0), min_size=2, max_size=16))
def test_erroneous_scale_increases_with_r1(r1):
    """S = 2 sigmoid(r1 - r0) is increasing in r1, and strictly inside (1, 2) for moderate r1."""
    r1 = sorted(r1)
    p_judge = torch.full((len(r1),), 0.5)
    p_base = p_judge / torch.tensor(r1)
    p_std = torch.full_like(p_judge, 0.01)  # r2 = 50 > r0
    scales, err = incorrect_token_scales(p_base, p_std, p_judge, max_error_fraction=1.0)  # every token flagged
    assert err.all()
    assert (scales[1:] >= scales[:-1]).all()
    assert ((scales > 1) & (scales < 2)).all()
    for a, b, sa, sb in zip(r1, r1[1:], scales, scales[1:]):
        if b - a > 1e-2:
            assert sb > sa


@FAST
@given(rows=st.lists(st.tuples(st.lists(st.tuples(probs, probs, probs), min_size=1, max_size=12),
                               st.booleans()), min_size=1, max_size=4),
       loss_type=st.sampled_from(["nlft", "cut", "nll"]), irrelevant=st.sampled_from(["zero", "reference"]))
def test_batch_scales_and_loss_finite_zero_outside_response(rows, loss_type, irrelevant):
    """Any probabilities (0 and 1 included), any mix of rows: finite scales, loss and gradient;
    nothing outside the response mask."""
    width = max(len(r) for r, _ in rows)
    p = torch.zeros(3, len(rows), width)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (toks, _) in enumerate(rows):
        for t, triple in enumerate(toks):
            p[:, i, t] = torch.tensor(triple)
            mask[i, t] = True
    correct = torch.tensor([c for _, c in rows])
    lo = torch.arange(width).expand(len(rows), width).clamp(min=0) - 1
    hi = lo + 2
    ts = batch_token_scales(p[0], p[1], p[2], correct, mask, (lo.clamp(min=0), hi.clamp(max=width - 1)),
                            loss_type=loss_type, irrelevant=irrelevant)
    for field in ts:
        assert field.shape == mask.shape
    assert torch.isfinite(ts.scales).all()
    assert (ts.scales[~mask] == 0).all() and not ts.unlikelihood[~mask].any()
    assert (ts.scales >= 0).all() and (ts.scales <= 2).all()
    # P_base exactly 0 gives log P = -inf: those tokens must not turn the loss into NaN when unweighted.
    logps = p[0].log().where(mask, torch.zeros(())).requires_grad_(True)
    loss = nlft_loss(logps, ts.scales, ts.unlikelihood, mask)
    likelihood_on_zero = mask & (p[0] == 0) & (ts.scales > 0) & ~ts.unlikelihood
    if likelihood_on_zero.any():
        assert loss.item() == math.inf  # -S log 0 with S > 0 is infinite: the honest answer
    else:
        assert math.isfinite(loss.item())
        loss.backward()
        assert torch.isfinite(logps.grad).all()


def test_all_padding_batch_loss_is_zero():
    """A batch with no response token: loss 0 (not NaN), gradient 0."""
    logps = torch.zeros(2, 3, requires_grad=True)
    none = torch.zeros(2, 3, dtype=torch.bool)
    ts = batch_token_scales(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), torch.tensor([True, False]), none)
    assert (ts.scales == 0).all()
    loss = nlft_loss(logps, ts.scales, ts.unlikelihood, none)
    loss.backward()
    assert loss.item() == 0.0 and (logps.grad == 0).all()


# ---------------------------------------------------------------------------------------------------
# JSONL helpers

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), st.text())
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
json_rows = st.lists(st.dictionaries(st.text(max_size=10), json_values, max_size=5), min_size=0, max_size=8)


@FAST
@given(batches=st.lists(json_rows, min_size=1, max_size=3))
def test_append_then_read_round_trips(tmp_path_factory, batches):
    """Rows appended in several calls read back equal, in order (unicode, nesting, line separators)."""
    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    for rows in batches:
        append_jsonl(path, rows)
    expected = [r for rows in batches for r in rows]
    assert read_jsonl(path) == expected
    assert read_jsonl(path, tolerate_torn_tail=True) == expected
    assert [row for _, row in iter_jsonl(path)] == expected


@FAST
@given(rows=json_rows.filter(bool), cut=st.floats(0.0, 1.0))
def test_torn_tail_is_repaired_to_the_complete_rows(tmp_path_factory, rows, cut):
    """A crash mid-append leaves a prefix of the last line: reading tolerantly or repairing keeps
    exactly the complete rows before it (or all rows when the cut left a complete JSON value)."""
    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    append_jsonl(path, rows)
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    last_len = len(data) - 1 - last_start
    keep = last_start + int(cut * last_len)  # a proper prefix of the last line, newline excluded
    path.write_bytes(data[:keep])
    complete_tail = keep - last_start == last_len
    expected = rows if complete_tail else rows[:-1]
    assert read_jsonl(path, tolerate_torn_tail=True) == expected
    if not complete_tail and keep > last_start:
        with pytest.raises(DataError, match=rf"line {len(rows)}"):
            read_jsonl(path)
    repair_torn_tail(path)
    assert read_jsonl(path) == expected
    assert path.read_bytes() == b"" or path.read_bytes().endswith(b"\n")
    append_jsonl(path, [{"after": "repair"}])
    assert read_jsonl(path) == [*expected, {"after": "repair"}]
