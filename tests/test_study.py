"""The study on a tiny random model: data drawn per seed, equal budgets, best checkpoints on validation questions,
paired tests with Holm's adjustment, tables rebuilt from the committed files alone, and the preset selection."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace

import pytest

from nlft.cli import main
from nlft.study import StudyConfig, budget, run_study
from nlft.study.cells import cells_of
from nlft.study.data import derived_rows, ids_sha, records_sha
from nlft.study.stats import holm, paired_counts, sign_flip_p
from nlft.tasks.sources import load_questions, parse_task
from nlft.utils.files import atomic_write_jsonl, read_jsonl

TASK = "chain_sum:max_terms=2,max_digits=1"


def test_parse_task_and_generator_options():
    assert parse_task("chain_sum") == ("chain_sum", {})
    assert parse_task("chain_sum:max_terms=3, max_digits=2") == ("chain_sum", {"max_terms": 3, "max_digits": 2})
    with pytest.raises(ValueError, match="key=value"):
        parse_task("chain_sum:max_terms")
    rows = load_questions(TASK, split="train", limit=20)
    for row in rows:  # two one-digit terms: "a + b =" or "a - b ="
        expression = row["question"].rsplit(":", 1)[1].strip().rstrip("=").split()
        assert len(expression) == 3 and all(len(t) == 1 for t in expression[::2])


def test_sign_flip_test_by_hand():
    """Q questions with nonzero differences give 2^Q equally likely sign patterns under the null.

    [1, 1, 1]: sums 3, 1, 1, 1, -1, -1, -1, -3; |sum| >= 3 in 2 of 8 -> 0.25.
    [2, 1]: sums 3, 1, -1, -3; |sum| >= 3 in 2 of 4 -> 0.5. [2, -1, 0]: observed 1, every pattern reaches it -> 1.
    [1] * 10: only the two all-equal patterns reach 10 -> 2 / 1024.
    """
    assert sign_flip_p([1, 1, 1]) == 0.25
    assert sign_flip_p([2, 1]) == 0.5
    assert sign_flip_p([2, -1, 0]) == 1.0
    assert sign_flip_p([0, 0]) == 1.0
    assert sign_flip_p([1] * 10) == pytest.approx(2 / 1024)
    assert sign_flip_p([-1] * 10) == sign_flip_p([1] * 10)


def test_holm_by_hand():
    """Sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, 1 x 0.04 = 0.04 -> raised to 0.06."""
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_paired_counts_combine_the_seeds_per_question():
    a = [[True, True, False], [True, False, False]]
    b = [[False, True, True], [False, False, True]]
    diffs, gained, lost = paired_counts(a, b)
    assert diffs == [2, 0, -2] and (gained, lost) == (2, 2)


def test_every_arm_gets_nlfts_optimiser_steps():
    cfg = StudyConfig()
    assert budget(50, cfg) == 39 and budget(100, cfg) == 75  # 13 and 25 batches of 4, 3 epochs
    cells = cells_of(StudyConfig(panel=("rg:x",), sizes=(50, 100), seeds=(0, 1), arms=("sft_gold", "nlft"),
                                 panel_arms=("nlft",)))
    assert cells[:5] == [(StudyConfig().main_task, "sft_gold", 50, 0), (StudyConfig().main_task, "nlft", 50, 0),
                         (StudyConfig().main_task, "sft_gold", 100, 0), (StudyConfig().main_task, "nlft", 100, 0),
                         ("rg:x", "nlft", 50, 0)]
    with pytest.raises(ValueError, match="unknown study arm"):
        StudyConfig(arms=("dpo",))


def test_a_generator_as_multiple_choice_and_as_short_text():
    choice = derived_rows("choice-of:family_relationships", "test", 3)
    assert all(r["task"] == "choice" and len(r["meta"]["choices"]) == 4 for r in choice)
    assert all(r["meta"]["choices"]["ABCD".index(r["gold"])] in r["reference"] for r in choice)
    assert derived_rows("choice-of:family_relationships", "test", 3) == choice  # seeded
    text = derived_rows("text-of:family_relationships", "test", 3)
    assert all(r["task"] == "text" and r["reference"] == f"#### {r['gold']}" for r in text)


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    """A whole tiny study: 2 arms x 2 seeds on one task, plus the base model."""
    from support import save_tiny_model

    # a wide initialisation keeps the random model from writing blank outputs
    model_dir = save_tiny_model(tmp_path_factory.mktemp("wide"), tokenizer, initializer_range=0.5)
    out = tmp_path_factory.mktemp("study")
    cfg = StudyConfig(model=str(model_dir), main_task=TASK, panel=(), sizes=(4,), seeds=(0, 1),
                      arms=("sft_gold", "nlft"), pool_size=8, epochs=2, lr=1e-3, eval_points=2, eval_size=6,
                      val_size=4, eval_max_new_tokens=6, eval_batch_size=8, gen_max_new_tokens=12,
                      candidates=("paper",), select_size=4, select_seeds=(0,))
    run_study(out, cfg)
    return out, cfg


@pytest.mark.slow  # the study fixture trains four tiny cells
def test_cells_draw_their_data_per_seed_and_train_the_same_steps(study):
    out, cfg = study
    cells = {p.parent.name: json.loads(p.read_text()) for p in (out / "chain_sum" / "cells").glob("*/result.json")}
    assert set(cells) == {"base", "sft_gold-n4-s0", "nlft-n4-s0", "sft_gold-n4-s1", "nlft-n4-s1"}
    trained = [c for name, c in cells.items() if name != "base"]
    assert {c["optimizer_steps"] for c in trained} == {budget(4, cfg)} == {2}  # 1 batch of 4, 2 epochs
    assert len({c["train_ids_sha"] for c in trained if c["seed"] == 0}) == 1
    assert cells["nlft-n4-s0"]["train_ids_sha"] != cells["nlft-n4-s1"]["train_ids_sha"]
    assert len({c["train_records_sha"] for c in trained if c["seed"] == 0}) == 1
    assert cells["nlft-n4-s0"]["train_records_sha"] != cells["nlft-n4-s1"]["train_records_sha"]
    for c in trained:
        assert [p["step"] for p in c["val_curve"]] == [1, 2]
        assert c["kept_step"] in (1, 2) and c["task"] == TASK and c["eval_n"] == 6
        best = max(p["flexible"] for p in c["val_curve"])
        assert c["kept_val_flexible"] == best
    pool = [json.loads(x)["question"] for x in (out / "chain_sum" / "data" / "pool.jsonl").read_text().splitlines()]
    held = [json.loads(x)["question"] for x in (out / "chain_sum" / "data" / "heldout.jsonl").read_text().splitlines()]
    val = [json.loads(x)["question"] for x in (out / "chain_sum" / "data" / "val.jsonl").read_text().splitlines()]
    assert not (set(pool) & set(held)) and not (set(pool) & set(val)) and not (set(held) & set(val))


@pytest.mark.slow
def test_report_is_rebuilt_from_the_committed_files_alone(study, tmp_path, capsys):
    out, _ = study
    assert main(["study", "--out", str(out), "--report"]) == 0
    table = json.loads((out / "table.json").read_text())
    entry = table["tasks"][TASK]["sizes"]["4"]
    assert entry["nlft"]["seeds"] == 2 and entry["nlft"]["optimizer_steps"] == [2]
    comparison = next(c for c in table["comparisons"] if (c["a"], c["b"]) == ("nlft", "sft_gold"))
    assert {"a", "b", "task", "n", "p", "p_holm"} <= set(comparison) and comparison["p_holm"] >= comparison["p"]
    assert comparison["gained"] + comparison["lost"] <= 12  # 6 questions x 2 seeds
    first = (out / "predictions.jsonl.gz").read_bytes()
    time.sleep(1.1)  # a gzip header's time counts seconds: the same predictions must give the same bytes later
    assert main(["study", "--out", str(out), "--report"]) == 0
    assert (out / "predictions.jsonl.gz").read_bytes() == first
    committed = tmp_path / "committed"
    committed.mkdir()
    for name in ("cells.jsonl", "predictions.jsonl.gz", "study.json"):
        shutil.copy(out / name, committed / name)
    capsys.readouterr()
    assert main(["study", "--out", str(committed), "--report"]) == 0
    assert json.loads((committed / "table.json").read_text()) == table
    assert (committed / "table.md").read_text() == (out / "table.md").read_text()
    assert (committed / "paired.md").read_text() == (out / "paired.md").read_text()


@pytest.mark.slow
def test_selection_reads_validation_questions_only(study):
    """A selection run trains the candidate and SFT on the same outputs, scores them on validation questions, and
    never on the held-out ones."""
    from nlft.study.report import select_default

    out, cfg = study
    run_study(out, cfg, select=True)
    cell = out / "chain_sum" / "cells" / "cand_paper-n4-s0"
    result = json.loads((cell / "result.json").read_text())
    assert result.get("accuracy_flexible") is None
    assert not (cell / "heldout").exists() and result["last_val_flexible"] is not None
    cells = [json.loads(p.read_text()) for p in (out / "chain_sum" / "cells").glob("*/result.json")]
    sel = select_default(cells, cfg)
    assert [r["candidate"] for r in sel["candidates"]] == ["paper"]
    row = sel["candidates"][0]
    assert row["tasks"][TASK]["last"] == [result["last_val_flexible"]]
    assert row["tasks"][TASK]["base"] == json.loads((out / "chain_sum" / "cells" / "base" / "result.json").read_text())[
        "val_flexible"]
    assert (sel["chosen"] == "paper") == (row["complete"] and row["below_base"] == 0)
    # a second selection seed is added to the same study: its cells run, nothing earlier is refused or rerun
    before = (cell / "result.json").stat().st_mtime_ns
    run_study(out, replace(cfg, select_seeds=(0, 1)), select=True, only=["sft_outputs", "s1"])
    added = json.loads((out / "chain_sum" / "cells" / "sft_outputs-n4-s1" / "result.json").read_text())
    assert added["seed"] == 1 and added["train_ids_sha"] != json.loads(
        (out / "chain_sum" / "cells" / "sft_outputs-n4-s0" / "result.json").read_text())["train_ids_sha"]
    assert (cell / "result.json").stat().st_mtime_ns == before


def test_selection_criterion_and_bar_by_hand():
    """Two tasks, base 10% and 20%, SFT on the same outputs 15% and 30%. 'a' stays above base and above SFT everywhere:
    chosen, meets the bar. 'b' has one seed below base on task two: not eligible. 'c' stays above base (eligible) but
    trails SFT on task two (margin -5 points): its mean margin +2.5 < a's, and it misses the bar."""
    from nlft.study.report import select_default, selection_markdown

    cfg = StudyConfig(main_task="t1", panel=("t2",), candidates=("paper", "robust", "robust_word"), select_size=50,
                      select_seeds=(0, 1))
    base, sft = {"t1": 0.10, "t2": 0.20}, {"t1": 0.15, "t2": 0.30}
    last = {"paper": {"t1": (0.20, 0.20), "t2": (0.40, 0.40)}, "robust": {"t1": (0.30, 0.30), "t2": (0.19, 0.50)},
            "robust_word": {"t1": (0.25, 0.25), "t2": (0.25, 0.25)}}
    cells = [{"task": t, "cell": "base", "val_flexible": base[t]} for t in base]
    for t in base:
        for s in (0, 1):
            cells.append({"task": t, "cell": f"sft_outputs-n50-s{s}", "last_val_flexible": sft[t]})
            for cand, per_task in last.items():
                cells.append({"task": t, "cell": f"cand_{cand}-n50-s{s}", "last_val_flexible": per_task[t][s],
                              "token_classes": {"erroneous": 7, "incorrect_without_flag": 2, "incorrect_excluded": 1,
                                                "incorrect_outputs": 40}})
    sel = select_default(cells, cfg)
    rows = {r["candidate"]: r for r in sel["candidates"]}
    assert sel["chosen"] == "paper"
    assert rows["paper"]["meets_bar"] and rows["paper"]["mean_margin"] == pytest.approx((0.05 + 0.10) / 2)
    assert rows["robust"]["below_base"] == 1 and not rows["robust"]["meets_bar"]
    assert rows["robust_word"]["below_base"] == 0 and not rows["robust_word"]["meets_bar"]
    assert rows["robust_word"]["mean_margin"] == pytest.approx((0.10 - 0.05) / 2)
    text = selection_markdown(sel)
    assert "**paper**" in text and "7 flagged; 2/1/40" in text


def test_a_candidate_and_the_table_arm_with_its_settings_share_one_run():
    """``cand:robust`` (the paper preset plus two settings) and ``nlft_robust`` (the robust preset) train alike: their
    train keys differ only in the preset's name, so the table reuses the candidate's run."""
    from nlft.study.cells import _effective, _train_key

    cfg = StudyConfig()
    robust, cand = _train_key(cfg, "nlft_robust", "sha", 50, 0), _train_key(cfg, "cand:robust", "sha", 50, 0)
    assert robust != cand and _effective(robust) == _effective(cand)
    assert _effective(_train_key(cfg, "cand:robust_word", "sha", 50, 0)) != _effective(robust)
    assert _effective(_train_key(cfg, "nlft_robust", "other", 50, 0)) != _effective(robust)


def test_wide_validation_draws_questions_the_study_never_used(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from wide_validation import fresh_questions

    from nlft.study.data import data_dir, task_questions
    from nlft.tasks.sources import file_row
    from nlft.utils.files import atomic_write_jsonl

    data = data_dir(tmp_path, TASK)
    data.mkdir(parents=True)
    test = task_questions(TASK, "test", 12)
    atomic_write_jsonl(data / "pool.jsonl", [file_row(r) for r in task_questions(TASK, "train", 6)])
    atomic_write_jsonl(data / "val.jsonl", [file_row(r) for r in test[:4]])
    atomic_write_jsonl(data / "heldout.jsonl", [file_row(r) for r in test[4:12]])
    rows = fresh_questions(tmp_path, TASK, 5)
    used = {r["question"].strip() for f in ("pool", "val", "heldout") for r in load_questions(str(data / f"{f}.jsonl"))}
    assert len(rows) == 5 and len({r["id"] for r in rows}) == 5
    assert not used & {r["question"].strip() for r in rows}
    assert all(r["gold"] for r in rows)  # graded like the study's own files
    with pytest.raises(SystemExit, match="fresh questions"):
        fresh_questions(tmp_path, TASK, 10_000)


def test_records_sha_sees_an_output_change_that_the_ids_do_not():
    rows = [{"id": "q1", "output": "2 + 2 = 4", "correct": True, "judgment": None},
            {"id": "q2", "output": "3 + 4 = 8", "correct": False, "judgment": "7, not 8"}]
    flipped = [rows[0], {**rows[1], "output": "3 + 4 = 7", "correct": True}]
    assert ids_sha(rows) == ids_sha(flipped) and ids_sha(rows) == ids_sha(rows[::-1])
    assert records_sha(rows) == records_sha(rows[::-1])  # the file's order does not enter
    assert records_sha(rows) != records_sha(flipped)
    assert records_sha(rows) != records_sha([rows[0], {**rows[1], "judgment": "the sum is 7"}])
    assert records_sha(rows) != records_sha([rows[0], {**rows[1], "question": "3 + 5 ="}])  # a generator's new text


@pytest.mark.slow
def test_task_data_travels_with_the_cells(study, tmp_path):
    """Each task's questions and pool records go to ``task-data/``; a study run with ``data_from`` unpacks them
    instead of generating, and its cells train on the very records of the committed ones."""
    from nlft.study.data import export_task_data, import_task_data
    from nlft.utils.files import DataError

    out, cfg = study
    bundle = export_task_data(out, TASK)
    assert bundle == out / "task-data" / "chain_sum.json.gz"
    first = bundle.read_bytes()
    time.sleep(1.1)
    assert export_task_data(out, TASK).read_bytes() == first  # the same data, the same bytes
    committed = tmp_path / "committed"
    (committed / "task-data").mkdir(parents=True)
    shutil.copy(bundle, committed / "task-data" / bundle.name)
    shutil.copy(out / "study.json", committed / "study.json")
    fresh = tmp_path / "fresh"
    run_study(fresh, cfg, only=["nlft-n4-s0"], data_from=committed)
    data, original = fresh / "chain_sum" / "data", out / "chain_sum" / "data"
    for name in ("pool.jsonl", "val.jsonl", "heldout.jsonl", "prepare/nlft.jsonl"):
        assert read_jsonl(data / name) == read_jsonl(original / name), name
    assert (data / "prompt.txt").read_text() == (original / "prompt.txt").read_text()
    assert not (data / "prepare" / "outputs.jsonl").exists()  # nothing was generated
    cell = "chain_sum/cells/nlft-n4-s0/result.json"
    assert json.loads((fresh / cell).read_text())["train_records_sha"] == json.loads((out / cell).read_text())[
        "train_records_sha"]
    assert import_task_data(committed, fresh, TASK, cfg)  # the same data again: nothing to do
    assert not import_task_data(tmp_path / "nowhere", tmp_path / "other", TASK)
    with pytest.raises(DataError, match="pool_size 8, not 9"):  # data made with other settings
        import_task_data(committed, tmp_path / "other", TASK, replace(cfg, pool_size=9))
    rows = read_jsonl(data / "pool.jsonl")
    atomic_write_jsonl(data / "pool.jsonl", [{**rows[0], "question": "1 + 1 ="}, *rows[1:]])
    with pytest.raises(DataError, match=r"already holds other pool\.jsonl"):  # never overwritten
        import_task_data(committed, fresh, TASK, cfg)
    (tmp_path / "partial" / "chain_sum" / "data").mkdir(parents=True)
    with pytest.raises(DataError, match="partly built"):
        import_task_data(committed, tmp_path / "partial", TASK, cfg)
