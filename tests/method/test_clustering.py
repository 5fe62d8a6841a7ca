"""Phrase spans and masks against hand-built cases."""

from __future__ import annotations

import torch

from nlft.method.clustering import cosine_spans, spans_to_mask, word_ids_from_offsets, word_spans


def test_cosine_spans_by_hand():
    """Vectors t0=[1,0], t1=[1,.1], t2=[0,1], t3=[1,0], t4 padding.

    cos(t0,t1)=0.995, cos(t1,t2)=0.0995, cos(t2,t3)=0, threshold 0.6:
    t0 -> [0,1]; t1 -> [0,1]; t2 -> [2,2]; t3 -> [3,3] (t4 is padding, never joined).
    """
    hidden = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    mask = torch.tensor([[True, True, True, True, False]])
    lo, hi = cosine_spans(hidden, mask, threshold=0.6, max_span=4)
    assert lo[0, :4].tolist() == [0, 0, 2, 3]
    assert hi[0, :4].tolist() == [1, 1, 2, 3]


def test_cosine_span_stops_at_first_dissimilar_and_at_max_span():
    """All similar: spans reach max_span each side. t2 dissimilar breaks the chain from t0 to t3."""
    same = torch.ones(1, 6, 3)
    lo, hi = cosine_spans(same, torch.ones(1, 6, dtype=torch.bool), threshold=0.9, max_span=2)
    assert lo.tolist() == [[0, 0, 0, 1, 2, 3]] and hi.tolist() == [[2, 3, 4, 5, 5, 5]]
    hidden = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    lo, hi = cosine_spans(hidden, torch.ones(1, 4, dtype=torch.bool), threshold=0.9, max_span=8)
    assert hi[0, 0].item() == 1 and lo[0, 3].item() == 3


def test_word_spans_by_hand():
    word_ids = torch.tensor([[0, 0, 1, 2, 2, 2, -1]])
    lo, hi = word_spans(word_ids)
    assert lo.tolist() == [[0, 0, 2, 3, 3, 3, 6]]
    assert hi.tolist() == [[1, 1, 2, 5, 5, 5, 6]]


def test_spans_to_mask():
    lo = torch.tensor([[0, 0, 2, 3, 3, 3, 6]])
    hi = torch.tensor([[1, 1, 2, 5, 5, 5, 6]])
    saliency = torch.tensor([[False, False, False, False, True, False, False]])
    assert spans_to_mask(saliency, lo, hi).tolist() == [[False, False, False, True, False, True, False]]
    both = saliency.clone()
    both[0, 0] = True
    assert spans_to_mask(both, lo, hi).tolist() == [[False, True, False, True, False, True, False]]
    assert not spans_to_mask(torch.zeros_like(saliency), lo, hi).any()


def test_word_ids_from_offsets():
    text = "So 12 + 3 = 15.\n#### 15"
    # tokens: "So", " 12", " +", " 3", " =", " 15", ".", "\n", "####", " 15"
    offsets = [(0, 2), (2, 5), (5, 7), (7, 9), (9, 11), (11, 14), (14, 15), (15, 16), (16, 20), (20, 23)]
    assert word_ids_from_offsets(text, offsets) == [0, 1, 2, 3, 4, 5, 5, 6, 6, 7]


def test_word_ids_with_real_tokenizer(tokenizer):
    text = "She earns 12 dollars per hour.\n#### 12"
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = word_ids_from_offsets(text, enc["offset_mapping"])
    assert len(ids) == len(enc["input_ids"])
    assert ids == sorted(ids) and ids[-1] == len(text.split()) - 1
    # every word's tokens decode back to that word
    words = text.split()
    for w in range(len(words)):
        toks = [t for t, i in zip(enc["input_ids"], ids) if i == w]
        assert tokenizer.decode(toks).strip() == words[w]
