"""The study command on a tiny random model: cells cached, resumable, tables and plots from what is done."""

from __future__ import annotations

import json

import pytest

from nlft.cli import main
from nlft.study import StudyConfig, cell_name, cells_of, markdown, parts, run_study
from nlft.tasks.sources import load_questions, parse_task
from nlft.utils.files import DataError

TASK = "chain_sum:max_terms=2,max_digits=1"


def test_parse_task_and_generator_options():
    assert parse_task("chain_sum") == ("chain_sum", {})
    assert parse_task("chain_sum:max_terms=3, max_digits=2") == ("chain_sum", {"max_terms": 3, "max_digits": 2})
    assert parse_task("chain_sum:allow_negation=True")[1] == {"allow_negation": True}
    with pytest.raises(ValueError, match="key=value"):
        parse_task("chain_sum:max_terms")
    rows = load_questions(TASK, split="train", limit=20)
    for row in rows:  # two one-digit terms: "a + b =" or "a - b ="
        expression = row["question"].rsplit(":", 1)[1].strip().rstrip("=").split()
        assert len(expression) == 3 and all(len(t) == 1 for t in expression[::2])
    with pytest.raises(ValueError, match="does not take"):
        load_questions("chain_sum:no_such_option=1", limit=2)


def test_cells_run_seed_by_seed_with_curves_after_the_first():
    cfg = StudyConfig(sizes=(10, 20), seeds=(0, 1), methods=("sft_gold", "nlft"), curve_size=10, curve_epochs=4,
                      gsm8k=False)
    main_part = parts(cfg)[0]
    cells = [cell_name(m, n, s, e) for m, n, s, e in cells_of(cfg, main_part)]
    assert cells == ["sft_gold-n10-s0", "nlft-n10-s0", "sft_gold-n20-s0", "nlft-n20-s0",
                     "sft_gold-n10-s0-e4", "nlft-n10-s0-e4",
                     "sft_gold-n10-s1", "nlft-n10-s1", "sft_gold-n20-s1", "nlft-n20-s1"]
    with pytest.raises(ValueError, match="unknown study method"):
        StudyConfig(methods=("dpo",))


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    """A whole tiny study: 3 methods x 2 seeds and the per-epoch curves, nine trainings (its tests are slow)."""
    from support import save_tiny_model

    # a wide initialisation keeps the random model from writing blank outputs
    model_dir = save_tiny_model(tmp_path_factory.mktemp("wide"), tokenizer, initializer_range=0.5)
    out = tmp_path_factory.mktemp("study")
    cfg = StudyConfig(model=str(model_dir), task=TASK, sizes=(4,), seeds=(0, 1), methods=("sft_gold", "sft_outputs",
                      "nlft"), epochs=1, lr=1e-3, eval_size=6, eval_max_new_tokens=6, eval_batch_size=8,
                      gen_max_new_tokens=12, curve_size=4, curve_epochs=2, curve_eval_size=4, gsm8k=False)
    table = run_study(out, cfg)
    return out, cfg, table


@pytest.mark.slow  # the study fixture trains nine tiny cells
def test_study_builds_table_from_cells(study):
    out, _, table = study
    part = table["parts"]["main"]
    data = out / "main" / "data"
    train = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (data / "eval.jsonl").read_text().splitlines()]
    assert len(train) == 4 and len(held) == 6
    assert not {r["question"] for r in train} & {r["question"] for r in held}
    records = [json.loads(x) for x in (data / "nlft-n4.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all("correct" in r for r in records)
    base = next(r for r in part["rows"] if r["method"] == "base")
    assert base["n"] == 0 and 0.0 <= base["flexible_mean"] <= 1.0
    n_correct = sum(r["correct"] for r in records)
    for method in ("sft_gold", "nlft"):
        row = next(r for r in part["rows"] if r["method"] == method)
        assert row["seeds"] == 2 and len(row["per_seed_flexible"]) == 2
        values = row["per_seed_flexible"]
        assert row["flexible_mean"] == pytest.approx(sum(values) / 2)
        assert row["flexible_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
        for seed in (0, 1):
            result = json.loads((out / "main" / "cells" / f"{method}-n4-s{seed}" / "result.json").read_text())
            assert result["n"] == 4 and result["eval_n"] == 6
            assert len(result["ci95_strict"]) == len(result["ci95_flexible"]) == 2 and "ci95" not in result
            assert (out / "main" / "cells" / f"{method}-n4-s{seed}" / "run" / "adapter").is_dir()
    sft_out = next(r for r in part["rows"] if r["method"] == "sft_outputs")
    if n_correct == 0:  # the random model gets nothing right: nothing for SFT on outputs to learn from
        assert sft_out["seeds"] == 0 and sft_out["skipped"] == "no correct outputs"
    else:
        assert sft_out["train_rows"] == n_correct
    curve = json.loads((out / "main" / "cells" / "nlft-n4-s0-e2" / "result.json").read_text())
    assert curve["n"] == 4 and curve["eval_n"] == 4  # the curves use the first curve_eval_size held-out questions
    curves = part["curves"]
    assert set(curves) >= {"sft_gold", "nlft"}
    assert curves["nlft"]["epochs"] == [1, 2] and len(curves["nlft"]["flexible"]) == 2
    base_preds = [json.loads(x) for x in (out / "main" / "cells" / "base" / "eval" / "predictions.jsonl")
                  .read_text().splitlines()]
    first = {r["id"] for r in held[:4]}
    assert part["curve_eval_size"] == 4 and "first 4 held-out questions" in markdown(table)
    assert part["curve_base"]["n"] == 4 and part["curve_base"]["flexible"] == pytest.approx(
        sum(r["correct_flexible"] for r in base_preds if r["id"] in first) / 4)
    text = markdown(table)
    assert "| NLFT (paper) |" in text and "N = 4" in text and "Per-epoch accuracy" in text
    assert (out / "table.md").read_text() == text
    assert (out / "plot_sizes.png").stat().st_size > 1000 and (out / "plot_epochs.png").stat().st_size > 1000


@pytest.mark.slow  # the study fixture trains nine tiny cells
def test_study_rerun_uses_cached_cells_and_refuses_another_protocol(study, capsys):
    out, cfg, table = study
    cell = out / "main" / "cells" / "nlft-n4-s0" / "result.json"
    before = cell.stat().st_mtime_ns
    again = run_study(out, cfg)
    assert cell.stat().st_mtime_ns == before
    assert again["parts"] == table["parts"]
    other = StudyConfig(**{**cfg.__dict__, "lr": 5e-5})
    with pytest.raises(DataError, match="lr"):
        run_study(out, other)
    # a deleted cell is trained again with the same seed and lands on the same accuracy (CPU is deterministic)
    old = json.loads(cell.read_text())
    import shutil

    shutil.rmtree(cell.parent)
    assert main(["study", "--out", str(out), "--model", cfg.model, "--task", TASK, "--sizes", "4", "--seeds", "0,1",
                 "--methods", "sft_gold,sft_outputs,nlft", "--epochs", "1", "--lr", "1e-3", "--eval-size", "6",
                 "--eval-max-new-tokens", "6", "--eval-batch-size", "8", "--gen-max-new-tokens", "12",
                 "--curve-size", "4", "--curve-epochs", "2", "--curve-eval-size", "4", "--no-gsm8k",
                 "--only", "nlft-n4-s0"]) == 0
    new = json.loads(cell.read_text())
    assert new["accuracy_flexible"] == old["accuracy_flexible"]
    assert "| NLFT (paper) |" in capsys.readouterr().out


@pytest.mark.slow  # the study fixture trains nine tiny cells
def test_cells_travel_through_cells_jsonl(study, tmp_path):
    """A study begun on one machine continues on another: its cells.jsonl restores the finished cells."""
    from nlft.study import collect, import_cells, protocol_sha
    from nlft.train.config import PRESETS

    out, cfg, _ = study
    rows = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert rows and all(r["protocol_sha"] == protocol_sha(cfg) for r in rows)
    foreign = {**rows[0], "cell": "nlft-n4-s9", "protocol_sha": "0" * 16}
    sweep = {"part": "main", "cell": "sweep/paper", "method": "nlft", "accuracy_flexible": 0.25,
             "protocol_sha": protocol_sha(cfg), "preset_settings": PRESETS["paper"]}
    (tmp_path / "cells.jsonl").write_text("\n".join(json.dumps(r) for r in [*rows, foreign, sweep]) + "\n")
    fresh = tmp_path / "elsewhere"
    assert import_cells(fresh, cfg, tmp_path / "cells.jsonl") == len(rows) + 1
    assert not (fresh / "main" / "cells" / "nlft-n4-s9").exists()
    assert json.loads((fresh / "main" / "sweep" / "paper" / "result.json").read_text())["accuracy_flexible"] == 0.25
    again, here = collect(fresh, cfg)["parts"]["main"], collect(out, cfg)["parts"]["main"]
    assert again["rows"] == here["rows"] and again["curves"] == here["curves"]
    assert again["curve_base"] == here["curve_base"]  # kept in the base cell's result
    assert import_cells(fresh, cfg, tmp_path / "cells.jsonl") == 0  # nothing twice


def test_study_data_of_a_reasoning_gym_task(tmp_path, tiny_dir):
    """A task other than numbers: its brief prompt, rows that keep their task, the rule judge."""
    from nlft.study import build_data
    from nlft.tasks.registry import get_task

    cfg = StudyConfig(model=str(tiny_dir), task="rg:spell_backward", sizes=(4,), seeds=(0,), methods=("nlft",),
                      eval_size=3, val_size=2, gen_max_new_tokens=6, gsm8k=False)
    main_part = parts(cfg)[0]
    build_data(tmp_path, cfg, main_part)
    data = tmp_path / "main" / "data"
    task = get_task("rg:spell_backward")
    assert (data / "prompt.txt").read_text() == task.template("brief")
    held = load_questions(str(data / "eval.jsonl"))
    assert len(held) == 3 and all(r["task"] == "rg:spell_backward" and r["meta"]["entry"] for r in held)
    records = [json.loads(line) for line in (data / "prepare" / "nlft.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["task"] == "rg:spell_backward" for r in records)
    assert {r["provenance"]["judge"]["kind"] for r in records} == {"rule"}
