"""Evaluation: Wilson interval, grading summary, resumable predictions, the `nlft eval` command."""

from __future__ import annotations

import json

import pytest
from support import GSM8K_DIR, make_tiny_model

from nlft.cli import main
from nlft.eval.accuracy import eval_rows, evaluate, intervals, paired_change, summarize, wilson_interval
from nlft.utils.files import DataError

QUESTIONS = [
    {"id": "q1", "question": "What is 3 + 4?", "reference": "3 + 4 = 7\n#### 7"},
    {"id": "q2", "question": "What is 6 * 5?", "gold": "30"},
    {"id": "q3", "question": "What is 12 * 3?", "reference": "#### 36"},
    {"id": "q4", "question": "What is 20 - 5?", "gold": "15"},
]


def test_wilson_interval_hand_values():
    """z = 1.96: 0/10 -> upper (z²/10) / (1 + z²/10) = 0.38415/1.38415 = 0.27753; 5/10 -> 0.5 ± 0.26340."""
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(0.277533, abs=1e-5)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.236593, abs=1e-5), pytest.approx(0.763407, abs=1e-5))
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(1 - 0.277533, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_eval_rows_reads_gold_and_names_bad_rows():
    rows = eval_rows(QUESTIONS)
    assert [r["gold"] for r in rows] == ["7", "30", "36", "15"]
    with pytest.raises(DataError, match=r"q.jsonl, line 2, field 'reference'"):
        eval_rows([QUESTIONS[0], {"id": "x", "question": "?", "reference": "no final answer"}], source="q.jsonl")
    with pytest.raises(DataError, match="line 1, field 'question'"):
        eval_rows([{"id": "x", "gold": "3"}])
    with pytest.raises(DataError, match="duplicate id 'q1'"):
        eval_rows([QUESTIONS[0], QUESTIONS[0]])


def test_summarize_counts():
    preds = [{"correct": True, "correct_flexible": True, "extracted": "7"},
             {"correct": False, "correct_flexible": True, "extracted": None},
             {"correct": False, "correct_flexible": False, "extracted": "3"},
             {"correct": True, "correct_flexible": True, "extracted": "1"}]
    m = summarize(preds)
    assert m["accuracy_strict"] == 0.5 and m["accuracy_flexible"] == 0.75 and m["n"] == 4
    assert m["answered_share"] == 0.75
    assert m["ci95_strict"] == list(wilson_interval(2, 4)) and m["ci95_flexible"] == list(wilson_interval(3, 4))
    assert "ci95" not in m  # one interval per accuracy, each named


def test_wilson_interval_exact_at_the_bounds():
    """k = 0 gives a lower bound of exactly 0 and k = n an upper bound of exactly 1 (not 8.7e-19 or 1 - 1e-16).

    Hand-derived for n = 300, k = 0: the upper bound is z^2 / (n + z^2) = 3.8415 / 303.8415 = 0.012643.
    """
    lo, hi = wilson_interval(0, 300)
    assert lo == 0.0 and hi == pytest.approx(0.0126430, abs=1e-6)
    lo, hi = wilson_interval(300, 300)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.0126430, abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(14, 300)  # the collapsed cell's flexible accuracy, 4.7%
    assert 0.02 < lo < 14 / 300 < hi < 0.08


def test_intervals_reads_old_and_new_metrics():
    new = summarize([{"correct": False, "correct_flexible": True, "extracted": None}] * 2
                    + [{"correct": False, "correct_flexible": False, "extracted": None}] * 2)
    assert intervals(new) == {"ci95_strict": [0.0, wilson_interval(0, 4)[1]],
                              "ci95_flexible": list(wilson_interval(2, 4))}
    # a file from before the split: one ci95 (the strict accuracy's); flexible from the counts, else None
    old = {"accuracy_strict": 0.0, "accuracy_flexible": 0.047, "n": 300, "n_correct_flexible": 14,
           "ci95": [8.673617379884035e-19, 0.012642971421476655]}
    assert intervals(old) == {"ci95_strict": old["ci95"], "ci95_flexible": list(wilson_interval(14, 300))}
    del old["n_correct_flexible"]
    assert intervals(old)["ci95_flexible"] is None


def _scripted(outputs: dict[str, str]):
    """A generation backend that answers each question from a table (the HF path is tested below)."""
    def generate(prompts, seeds):
        assert len(seeds) == len(prompts)
        return [next(v for k, v in outputs.items() if k in p) for p in prompts]
    return generate


def test_evaluate_grades_and_resumes(tmp_path, tokenizer):
    answers = {"3 + 4": "3 + 4 = 7\n#### 7", "6 * 5": "It is 30", "12 * 3": "#### 35", "20 - 5": "#### 15"}
    calls = []

    def generate(prompts, seeds):
        calls.append(len(prompts))
        return _scripted(answers)(prompts, seeds)

    out = tmp_path / "ev"
    m = evaluate(None, tokenizer, QUESTIONS, out_dir=out, batch_size=2, limit=3, generate=generate, progress=False)
    assert m["n"] == 3 and m["n_correct_strict"] == 1 and m["n_correct_flexible"] == 2
    assert calls == [2, 1]
    # interrupted mid-append: a torn last line is cut, then only the missing question is generated
    with open(out / "predictions.jsonl", "a") as fh:
        fh.write('{"id": "q4", "outp')
    m = evaluate(None, tokenizer, QUESTIONS, out_dir=out, batch_size=2, generate=generate, progress=False)
    assert calls == [2, 1, 1] and m["generated_now"] == 1
    assert m["accuracy_strict"] == 0.5 and m["accuracy_flexible"] == 0.75 and m["n"] == 4
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == ["q1", "q2", "q3", "q4"]
    assert preds[1] == {"id": "q2", "question": "What is 6 * 5?", "gold": "30", "output": "It is 30",
                        "extracted": None, "extracted_flexible": "30", "correct": False, "correct_flexible": True}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["ci95_strict"] == list(wilson_interval(2, 4))
    assert saved["ci95_flexible"] == list(wilson_interval(3, 4))
    with pytest.raises(DataError, match="temperature"):
        evaluate(None, tokenizer, QUESTIONS, out_dir=out, temperature=0.6, generate=generate, progress=False)


def test_evaluate_batched_hf_matches_single(tmp_path, tokenizer):
    """Real generation (left padding, KV cache): batch size 4 gives the same greedy outputs as batch size 1.

    A wide initialisation keeps the random model from repeating the prompt's last token (blank outputs).
    """
    tiny_model = make_tiny_model(len(tokenizer), initializer_range=0.5)
    a = evaluate(tiny_model, tokenizer, QUESTIONS, out_dir=tmp_path / "a", batch_size=4, max_new_tokens=6,
                 progress=False)
    b = evaluate(tiny_model, tokenizer, QUESTIONS, out_dir=tmp_path / "b", batch_size=1, max_new_tokens=6,
                 progress=False)
    assert a["n"] == b["n"] == 4
    out_a = [json.loads(x)["output"] for x in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    out_b = [json.loads(x)["output"] for x in (tmp_path / "b" / "predictions.jsonl").read_text().splitlines()]
    assert out_a == out_b
    assert all(o for o in out_a)


@pytest.fixture(scope="module")
def question_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "questions.jsonl"
    path.write_text("".join(json.dumps({"question": q["question"], "answer": q.get("reference") or f"#### {q['gold']}"})
                            + "\n" for q in QUESTIONS))
    return path


def test_eval_cli_on_tiny_model(tmp_path, tiny_dir, question_file, capsys):
    out = tmp_path / "ev"
    argv = ["eval", "--model", str(tiny_dir), "--dataset", str(question_file), "--limit", "3", "--max-new-tokens", "4",
            "--batch-size", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 3
    assert set(metrics) >= {"accuracy_strict", "ci95_strict", "accuracy_flexible", "ci95_flexible", "model"}
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3
    printed = capsys.readouterr().out
    assert "n=3 ->" in printed and "{" not in printed  # the summary line, no raw dict before it
    # rerun: nothing left to generate
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["generated_now"] == 0


def test_eval_cli_bad_prompt_and_run(tmp_path, capsys):
    assert main(["eval", "--prompt", "nope", "--out", str(tmp_path)]) == 2
    assert "--prompt must be one of solve, base" in capsys.readouterr().err
    assert main(["eval", "--run", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_smollm2_gsm8k(tmp_path):
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"GSM8K not found in {GSM8K_DIR}")
    out = tmp_path / "ev"
    assert main(["eval", "--model", "smollm2", "--dataset", "gsm8k", "--data-dir", str(GSM8K_DIR), "--limit", "2",
                 "--max-new-tokens", "48", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 2 and 0.0 <= metrics["accuracy_strict"] <= 1.0


def test_paired_change_counts_changed_questions_and_tests_them_exactly():
    before = [{"id": i, "correct_flexible": i < 4} for i in range(10)]  # 4 of 10 right
    after = [{"id": i, "correct_flexible": i in (0, 4, 5, 6, 7, 8)} for i in reversed(range(10))]  # 6 right
    got = paired_change(before, after)
    # gained: 4..8 (5 questions), lost: 1, 2, 3 (3 questions); two-sided sign test of 5 vs 3 of 8:
    # 2 * P(X <= 3), X ~ Bin(8, 1/2) = 2 * (1 + 8 + 28 + 56) / 256 = 186 / 256
    assert (got["gained"], got["lost"], got["n"]) == (5, 3, 10)
    assert got["before"] == 0.4 and got["after"] == 0.6 and abs(got["change"] - 0.2) < 1e-12
    assert got["p_value"] == 186 / 256
    # 10 gained, none lost: 2 / 2**10
    assert paired_change([{"id": i, "correct_flexible": False} for i in range(10)],
                         [{"id": i, "correct_flexible": True} for i in range(10)])["p_value"] == 2 / 1024
    # Nothing changed: p = 1.
    assert paired_change(before, before)["p_value"] == 1.0
    with pytest.raises(ValueError, match="same questions"):
        paired_change(before, after[:-1])
