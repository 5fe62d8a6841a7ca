"""Saliency map data: per-view probabilities and phrase spans measured with a real (tiny) model, the page."""

from __future__ import annotations

import json
import re

import pytest
import torch

from nlft.method.clustering import word_spans
from nlft.method.logps import pad_views, view_logps
from nlft.report.saliency import compute_token_probs, page_params, render_page, token_class_counts, token_pieces
from nlft.tasks.prompts import BASE_TEMPLATE
from nlft.train.config import NLFTConfig
from nlft.train.views import tokenize_record


def _config(tmp_path, **kw) -> NLFTConfig:
    return NLFTConfig(output_dir=str(tmp_path / "out"), report_to=[], **kw)


def _page_data(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="nlft-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_token_pieces_rebuild_the_text_even_across_multibyte_characters(tokenizer):
    text = "Le café coûte 3 € ☕, soit 12 + 3 = 15.\n#### 15"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_view_probabilities_match_single_record_forward_passes(tiny_model, tokenizer, records, tmp_path):
    """Batched measurement (batch 3, mixed lengths and views) equals one record at a time, view by view."""
    config = _config(tmp_path)
    examples = compute_token_probs(tiny_model, tokenizer, records, config=config, batch_size=3, progress=False)
    assert [e["correct"] for e in examples] == [True, True, False, False]
    tiny_model.eval()
    for row, ex in zip(records, examples):
        tok = tokenize_record(row, tokenizer, base_template=config.base_template,
                              standard_template=config.standard_template, judge_template=config.judge_template,
                              views=("standard", "judge"))
        n = len(tok["response_ids"])
        assert len(ex["tokens"]) == len(ex["p_base"]) == len(ex["p_std"]) == n
        assert "".join(ex["tokens"]) == row["output"] + tokenizer.eos_token
        views = {"p_base": tok["base_prompt_ids"], "p_std": tok["std_prompt_ids"]}
        if not row["correct"]:
            views["p_judge"] = tok["judge_prompt_ids"]
        else:
            assert ex["p_judge"] is None
        for key, prompt in views.items():
            batch = pad_views([prompt], [tok["response_ids"]], tokenizer.pad_token_id)
            with torch.no_grad():
                expected = view_logps(tiny_model, batch["input_ids"], batch["attention_mask"], batch["labels"])[0]
            torch.testing.assert_close(torch.tensor(ex[key]), expected[0].exp(), rtol=2e-5, atol=1e-9)
        lo, hi = (torch.tensor(x) for x in ex["spans"]["word"])
        w_lo, w_hi = word_spans(torch.tensor([tok["word_ids"]]))
        assert lo.tolist() == w_lo[0].tolist() and hi.tolist() == w_hi[0].tolist()
        c_lo, c_hi = (torch.tensor(x) for x in ex["spans"]["cosine"])
        pos = torch.arange(n)
        assert bool(((c_lo <= pos) & (pos <= c_hi) & (c_lo >= 0) & (c_hi < n)).all())
        assert bool((c_hi - c_lo <= 2 * config.max_phrase_span).all())


def test_cosine_spans_follow_the_configured_threshold(tiny_model, tokenizer, records, tmp_path):
    """Similarity >= -1 always holds (spans reach max_phrase_span or the ends); > 1 never (single tokens)."""
    wide = compute_token_probs(tiny_model, tokenizer, records[:1], config=_config(tmp_path, phrase_threshold=-1.0,
                               max_phrase_span=3), progress=False)[0]
    narrow = compute_token_probs(tiny_model, tokenizer, records[:1], config=_config(tmp_path, phrase_threshold=1.0),
                                 progress=False)[0]
    n = len(wide["tokens"])
    assert wide["spans"]["cosine"] == [[max(0, t - 3) for t in range(n)], [min(n - 1, t + 3) for t in range(n)]]
    lo, hi = narrow["spans"]["cosine"]
    assert sum(h - lo_ for lo_, h in zip(lo, hi)) <= 2  # float rounding may merge a rare identical pair


def test_records_are_validated_with_file_and_line(tiny_model, tokenizer, records):
    from nlft.utils.files import DataError

    bad = [records[0], {**records[2], "judgment": None}]
    with pytest.raises(DataError, match=r"data\.jsonl, line 2, field 'judgment'"):
        compute_token_probs(tiny_model, tokenizer, bad, source="data.jsonl", progress=False)


def test_long_outputs_are_cut_to_max_length(tiny_model, tokenizer, records, tmp_path):
    long = {**records[0], "output": "7 " * 400}
    ex = compute_token_probs(tiny_model, tokenizer, [long], config=_config(tmp_path, base_template=BASE_TEMPLATE),
                             max_length=200, progress=False)[0]
    base_len = len(tokenize_record(long, tokenizer, base_template=BASE_TEMPLATE,
                                   standard_template=NLFTConfig.standard_template,
                                   judge_template=NLFTConfig.judge_template)["std_prompt_ids"])
    assert len(ex["tokens"]) == 200 - base_len


def test_page_params_defaults_and_overrides(tmp_path):
    defaults = page_params()
    assert defaults == {"p0_correct": 0.95, "c1": 5.0, "c2": 0.3, "c3": 0.6, "r0": 1.5, "p0_incorrect": 0.01,
                        "irrelevant": "zero", "max_error_fraction": 0.5, "phrase_rule": "cosine",
                        "cut_threshold": 1.1}
    from_config = page_params(_config(tmp_path, r0=2.0, phrase_rule="word"), p0_correct=0.9, c1=None)
    assert (from_config["r0"], from_config["phrase_rule"], from_config["p0_correct"], from_config["c1"]) == \
        (2.0, "word", 0.9, 5.0)
    with pytest.raises(ValueError, match="phrase_rule"):
        page_params(phrase_rule="sentence")


def test_page_is_self_contained_and_escapes_model_text():
    ex = {"id": "a", "correct": True, "question": "q <b>", "reference": "r", "judgment": None,
          "tokens": ["</script>", "<!--", " x\u2028"], "p_base": [0.5, 0.5, 0.5], "p_std": [0.99, 0.2, 0.1],
          "p_judge": None, "spans": {"cosine": [[0, 1, 2], [0, 1, 2]], "word": [[0, 1, 2], [0, 1, 2]]}}
    page = render_page([ex], title="T <&>")
    assert page.count("</script>") == 2  # the data block and the code block: the token did not end either
    assert "<!--" not in page
    assert "<title>T &lt;&amp;&gt;</title>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    data = _page_data(page)
    assert data["examples"][0]["tokens"] == ["</script>", "<!--", " x\u2028"]
    assert data["params"] == page_params()


def test_cli_writes_a_page_and_reports_bad_rows(tiny_dir, records, tmp_path, capsys):
    from nlft.cli import main

    model_dir = tiny_dir
    data = tmp_path / "nlft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "site" / "saliency.html"
    code = main(["saliency", "--data", str(data), "--model", str(model_dir), "--out", str(out), "--limit", "3",
                 "--r0", "2.5", "--phrase-rule", "word"])
    assert code == 0
    page = _page_data(out.read_text())
    assert len(page["examples"]) == 3
    assert page["params"]["r0"] == 2.5 and page["params"]["phrase_rule"] == "word"
    assert page["meta"]["data"] == str(data)
    assert str(out) in capsys.readouterr().out

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(records[0]) + "\n" + json.dumps({**records[1], "correct": "yes"}) + "\n")
    code = main(["saliency", "--data", str(broken), "--model", str(model_dir), "--out", str(tmp_path / "b.html")])
    assert code == 2
    assert "broken.jsonl, line 2, field 'correct'" in capsys.readouterr().err
    assert not (tmp_path / "b.html").exists()


def test_token_class_counts_follow_the_rules_by_hand():
    # Correct output, 4 tokens: P_std = .99 > p0 = .95 at t0 (saliency), word span [0, 1] puts t1 in its
    # phrase (sub-saliency); t2, t3 are irrelevant.
    correct = {"correct": True, "tokens": ["a", "b", "c", "d"], "p_base": [0.5] * 4,
               "p_std": [0.99, 0.5, 0.5, 0.5], "p_judge": None,
               "spans": {"word": [[0, 0, 2, 3], [1, 1, 2, 3]], "cosine": [[0, 1, 2, 3], [0, 1, 2, 3]]}}
    # Incorrect output, 3 tokens: at t1, P_judge/P_base = .5/.1 = 5 and P_judge/P_std = .5/.2 = 2.5, both
    # above r0 = 1.5, and P_judge > .01: erroneous. Word span [1, 2] makes t2 near-error; t0 irrelevant.
    wrong = {"correct": False, "tokens": ["x", "y", "z"], "p_base": [0.4, 0.1, 0.4], "p_std": [0.4, 0.2, 0.4],
             "p_judge": [0.4, 0.5, 0.4],
             "spans": {"word": [[0, 1, 1], [0, 2, 2]], "cosine": [[0, 1, 2], [0, 1, 2]]}}
    params = page_params(phrase_rule="word")
    assert token_class_counts([correct, wrong], params) == {
        "saliency": 1, "sub-saliency": 1, "irrelevant": 3, "erroneous": 1, "near-error": 1, "tokens": 7}
    # No phrase rule: no phrase classes, their tokens are irrelevant.
    assert token_class_counts([correct, wrong], page_params(phrase_rule="none")) == {
        "saliency": 1, "sub-saliency": 0, "irrelevant": 5, "erroneous": 1, "near-error": 0, "tokens": 7}
    # A stricter saliency threshold leaves the correct output without saliency tokens.
    counts = token_class_counts([correct], page_params(phrase_rule="word", p0_correct=0.995))
    assert counts["saliency"] == 0 and counts["sub-saliency"] == 0 and counts["irrelevant"] == 4
