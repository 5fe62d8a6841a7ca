"""Phrase clustering around saliency tokens (the paper's "semantic clustering"), vectorised.

A phrase is a contiguous span of response tokens around a token. Two rules define it:

- ``"cosine"``: starting from token ``s``, the span grows left and right while each neighbour's
  hidden state (X_base view) has cosine similarity to ``s``'s hidden state of at least
  ``threshold``; it stops at the first neighbour below it (and after ``max_span`` tokens each side).
- ``"word"``: the span is the whitespace-delimited word that contains ``s``, from tokenizer offsets.

Both rules first give, for every token ``s``, the span ``[lo_s, hi_s]`` its phrase *would* have if
``s`` were a saliency token. These spans do not depend on which tokens are salient, so they can be
stored once (the saliency page recolours tokens from them as thresholds move). Then
:func:`spans_to_mask` marks every token covered by the span of some saliency token.

The reference code walks token by token in Python and, as written, keeps neighbours whose cosine
*distance* is above 0.4, which reads like a sign slip. Here similarity >= threshold is required.
"""

from __future__ import annotations

import torch


def cosine_spans(
    hidden: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    threshold: float = 0.6,
    max_span: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phrase span of every token under the cosine rule.

    Args:
        hidden: ``(B, T, H)`` hidden states of the response tokens (X_base view), any float dtype.
        response_mask: ``(B, T)`` bool, True on real response tokens; spans never cross padding.
        threshold: minimum cosine similarity of a neighbour to the centre token.
        max_span: the most tokens a span reaches on each side.

    Returns:
        ``(lo, hi)``: ``(B, T)`` long, inclusive span bounds of each token (``lo <= t <= hi``).
    """
    bsz, seq, _ = hidden.shape
    unit = torch.nn.functional.normalize(hidden.detach().float(), dim=-1)
    mask = response_mask.to(torch.bool)
    # right[b, t, k-1]: token t+k is similar enough to t; left[b, t, k-1]: token t-k is. One (B, T)
    # similarity per offset k keeps memory at O(B * T * H), whatever max_span is.
    right = torch.zeros(bsz, seq, max_span, dtype=torch.bool, device=hidden.device)
    left = torch.zeros_like(right)
    for k in range(1, min(max_span, seq - 1) + 1):
        sim = (unit[:, :-k] * unit[:, k:]).sum(-1)  # (B, T-k): similarity of t and t+k
        ok = (sim >= threshold) & mask[:, :-k] & mask[:, k:]
        right[:, :-k, k - 1] = ok
        left[:, k:, k - 1] = ok
    # A neighbour joins only if every token between it and the centre joined: a cumulative product.
    pos = torch.arange(seq, device=hidden.device)[None, :]
    lo = pos - left.long().cumprod(dim=-1).sum(dim=-1)
    hi = pos + right.long().cumprod(dim=-1).sum(dim=-1)
    return lo, hi


def word_spans(word_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Phrase span of every token under the word rule.

    Args:
        word_ids: ``(B, T)`` long, the index of the word each response token belongs to,
            non-decreasing along T; padding positions hold -1.

    Returns:
        ``(lo, hi)``: ``(B, T)`` long, the first and last token of the token's word.
    """
    bsz, seq = word_ids.shape
    pos = torch.arange(seq, device=word_ids.device).expand(bsz, seq)
    same_prev = torch.zeros_like(word_ids, dtype=torch.bool)
    same_prev[:, 1:] = word_ids[:, 1:] == word_ids[:, :-1]
    # lo: position of the last word start at or before t (a running max of start positions).
    starts = torch.where(same_prev, torch.zeros_like(pos), pos)
    lo = starts.cummax(dim=-1).values
    # hi: the same from the right, on the flipped sequence.
    same_next = torch.zeros_like(same_prev)
    same_next[:, :-1] = same_prev[:, 1:]
    rpos = seq - 1 - pos
    ends = torch.where(same_next, torch.zeros_like(pos), rpos).flip(-1)
    hi = seq - 1 - ends.cummax(dim=-1).values.flip(-1)
    return lo, hi


def spans_to_mask(saliency: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Tokens covered by the span of at least one saliency token, the saliency tokens excluded.

    Args:
        saliency: ``(B, T)`` bool.
        lo, hi: ``(B, T)`` long inclusive span bounds from :func:`cosine_spans` or :func:`word_spans`.

    Returns:
        ``(B, T)`` bool phrase mask (sub-saliency for correct outputs, near-error for incorrect ones).
    """
    bsz, seq = saliency.shape
    sal = saliency.to(torch.bool)
    # Difference array: +1 at the start of each salient span, -1 just after its end; a position is
    # covered when the running sum is positive. One extra column absorbs ends at T.
    diff = torch.zeros(bsz, seq + 1, dtype=torch.long, device=saliency.device)
    ones = sal.long()
    diff.scatter_add_(1, lo.clamp(0, seq).long(), ones)
    diff.scatter_add_(1, (hi.long() + 1).clamp(0, seq), -ones)
    covered = diff.cumsum(dim=-1)[:, :seq] > 0
    return covered & ~sal


def word_ids_from_offsets(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """Word index of each token of ``text``, from the tokenizer's character offsets.

    A word is a maximal run of non-whitespace characters. A token made only of whitespace joins the
    word that follows it (BPE tokenizers attach the leading space to the next word).

    Args:
        text: the response text that was tokenized.
        offsets: ``(start, end)`` character offsets of each token.

    Returns:
        One word index per token, non-decreasing.
    """
    # word_of[c] = index of the word that character c belongs to (whitespace: the next word).
    word_of = [0] * (len(text) + 1)
    word = -1
    prev_space = True
    for i, ch in enumerate(text):
        space = ch.isspace()
        if not space and prev_space:
            word += 1
        prev_space = space
        word_of[i] = word
    ids: list[int] = []
    last = 0
    for start, end in offsets:
        # The word of the token's first non-whitespace character; all-whitespace tokens take the next word.
        chars = [c for c in range(start, min(end, len(text))) if not text[c].isspace()]
        if chars:
            w = word_of[chars[0]]
        else:
            nxt = next((c for c in range(end, len(text)) if not text[c].isspace()), None)
            w = word_of[nxt] if nxt is not None else max(word, 0)
        last = max(last, w)
        ids.append(last)
    return ids
