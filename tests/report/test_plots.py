"""Run-directory plots and summaries, on hand-written run files."""

from __future__ import annotations

import json

import pytest
from support import png_size, write_run

from nlft.report.plots import ACCURACY_PNG, LOSS_PNG, SCALES_PNG, format_table, plot_run, series, summarize_run


def test_series_keeps_rows_with_both_numbers():
    rows = [{"step": 1, "loss": 2.0}, {"step": 2}, {"step": 3, "loss": float("nan")}, {"step": 4, "loss": 1.0},
            {"step": 5, "loss": True}, {"loss": 0.5}]
    assert series(rows, "loss") == ([1.0, 4.0], [2.0, 1.0])


def test_plot_run_writes_three_pngs(tmp_path):
    run = write_run(tmp_path / "run")
    paths = plot_run(run)
    assert [p.name for p in paths] == [LOSS_PNG, SCALES_PNG, ACCURACY_PNG]
    sizes = [png_size(p) for p in paths]
    assert sizes[0] == sizes[2] == (704, 440)  # 6.4 x 4.0 inches at 110 dpi
    assert sizes[1] == (1144, 440)  # two panels of 5.2 inches
    from matplotlib.image import imread

    pixels = imread(paths[0])
    assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_plot_run_leaves_out_what_is_missing(tmp_path):
    run = write_run(tmp_path / "run", accuracies=(), with_manifest=False, with_metrics=False)
    assert [p.name for p in plot_run(run, tmp_path / "pics")] == [LOSS_PNG, SCALES_PNG]
    assert (tmp_path / "pics" / LOSS_PNG).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert plot_run(empty) == []


def test_plot_run_reads_a_run_cut_off_mid_write(tmp_path):
    run = write_run(tmp_path / "run", accuracies=())
    with open(run / "log_history.jsonl", "a") as fh:
        fh.write('{"step": 9, "lo')
    assert LOSS_PNG in [p.name for p in plot_run(run)]


def test_summarize_run_reads_every_source(tmp_path):
    full = summarize_run(write_run(tmp_path / "nlft-run"))
    assert full == {"run": "nlft-run", "method": "nlft", "final_loss": 0.9, "accuracy": 0.55,
                    "accuracy_strict": 0.55, "accuracy_flexible": None, "ci95_strict": None, "ci95_flexible": None,
                    "grading": None, "wall_time_s": 125.0, "peak_memory_bytes": 3 * 2**30, "drift": None,
                    "kept": None}
    # Without manifest and metrics: accuracy from the last evaluation, wall time from the trainer's log.
    bare = summarize_run(write_run(tmp_path / "bare", with_manifest=False, with_metrics=False))
    assert (bare["method"], bare["accuracy"], bare["wall_time_s"], bare["peak_memory_bytes"]) == (None, 0.5, 33.0, None)
    (tmp_path / "bare" / "eval").mkdir()
    (tmp_path / "bare" / "eval" / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.125}))
    assert summarize_run(tmp_path / "bare")["accuracy"] == 0.125
    (tmp_path / "bare" / "config.yaml").write_text("loss_type: cut\nlearning_rate: 5.0e-05\n")
    assert summarize_run(tmp_path / "bare")["method"] == "cut"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert summarize_run(empty) == {"run": "empty", "method": None, "final_loss": None, "accuracy": None,
                                    "accuracy_strict": None, "accuracy_flexible": None, "ci95_strict": None,
                                    "ci95_flexible": None, "grading": None, "wall_time_s": None,
                                    "peak_memory_bytes": None, "drift": None, "kept": None}


def test_summarize_run_reads_old_and_new_intervals(tmp_path):
    """metrics.json with ci95_strict / ci95_flexible, and an old one with a single ci95 (the strict accuracy's)."""
    from nlft.eval.accuracy import wilson_interval

    run = write_run(tmp_path / "new")
    (run / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.0, "ci95_strict": [0.0, 0.0126],
                                                  "accuracy_flexible": 0.047, "ci95_flexible": [0.028, 0.077],
                                                  "n": 300}))
    row = summarize_run(run)
    assert (row["ci95_strict"], row["ci95_flexible"]) == ([0.0, 0.0126], [0.028, 0.077])
    (run / "metrics.json").write_text(json.dumps({"accuracy_strict": 0.0, "accuracy_flexible": 0.047, "n": 300,
                                                  "n_correct_strict": 0, "n_correct_flexible": 14,
                                                  "ci95": [8.673617379884035e-19, 0.012642971421476655]}))
    row = summarize_run(run)
    assert row["ci95_strict"] == [8.673617379884035e-19, 0.012642971421476655]
    assert row["ci95_flexible"] == list(wilson_interval(14, 300))


def test_summarize_run_names_a_broken_manifest(tmp_path):
    from nlft.utils.files import DataError

    run = write_run(tmp_path / "run")
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json"):
        summarize_run(run)


def test_format_table():
    rows = [{"run": "a", "method": "nlft", "final_loss": 0.91234, "accuracy": 0.5, "ci95_strict": [0.4, 0.6],
             "wall_time_s": 125.0, "peak_memory_bytes": 3 * 2**30,
             "drift": {"fired": True, "stopped": True, "epoch": 2.4, "nll_ratio": 2.31},
             "kept": {"keep": "best", "epoch": 2.0}},
            {"run": "sft", "method": None, "final_loss": None, "accuracy": None, "wall_time_s": 59.5,
             "peak_memory_bytes": None, "drift": {"fired": False, "max_nll_ratio": 1.1},
             "kept": {"keep": "last", "epoch": 3.0}}]
    rows[0].update(accuracy_flexible=0.625, ci95_flexible=[0.5, 0.75], grading="flexible")
    assert format_table(rows).splitlines() == [
        "run  method  data graded  final loss  strict      95% CI  flexible      95% CI  wall time  peak memory  "
        "drift                 kept",
        "---  ------  -----------  ----------  ------  ----------  --------  ----------  ---------  -----------  "
        "--------------------  ---------",
        "a    nlft    flexible         0.9123  50.00%  40.0-60.0%    62.50%  50.0-75.0%    2.1 min     3.00 GiB  "
        "stopped e2.4 (2.31x)  e2 (best)",
        "sft  -       -                     -       -           -         -           -     59.5 s            -  "
        "ok (1.10x)            e3 (last)",
    ]


def test_run_figures_name_the_run_show_every_class_and_break_at_gaps(tmp_path):
    """Titles name the method and data, not the folder; the token-class plot has all five classes, with a gap where
    a step had no correct output; strict accuracy is not the bold line, and the epochs are marked."""
    import math

    from nlft.report.plots import class_series, run_figures

    run = write_run(tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["data"] = {"path": "/data/p/nlft-train.jsonl", "rows": 48}
    (run / "manifest.json").write_text(json.dumps(manifest))
    log = [json.loads(x) for x in (run / "log_history.jsonl").read_text().splitlines()]
    del log[1]["nlft/saliency_share"], log[1]["nlft/sub_saliency_share"]  # step 2: no correct output in its batch
    (run / "log_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))

    figures = run_figures(run)
    loss_ax = figures[LOSS_PNG].axes[0]
    assert loss_ax.get_title() == "Training loss: NLFT on nlft-train.jsonl, 48 rows"
    classes_ax = figures[SCALES_PNG].axes[1]
    labels = [line.get_label() for line in classes_ax.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["saliency (correct)", "sub-saliency (correct)", "other tokens (correct)",
                      "erroneous (incorrect)", "other tokens (incorrect)"]
    steps, classes = class_series(log)
    assert steps == [1, 2, 3, 4]
    saliency = dict(classes)["saliency (correct)"]
    assert math.isnan(saliency[1]) and saliency[2] == pytest.approx(0.2)  # a gap, not a line across step 2
    assert dict(classes)["other tokens (correct)"][2] == pytest.approx(1 - 0.2 - 0.05)
    assert dict(classes)["other tokens (incorrect)"][0] == pytest.approx(0.98)
    acc_ax = figures[ACCURACY_PNG].axes[0]
    lines = {line.get_label(): line for line in acc_ax.get_lines() if not line.get_label().startswith("_")}
    assert lines["accuracy flexible"].get_linewidth() > lines["accuracy strict"].get_linewidth()
    assert lines["accuracy strict"].get_color() != "#9ca3af"
    marks = [line.get_xdata()[0] for line in acc_ax.get_lines() if line.get_label().startswith("_")]
    assert sorted(marks) == [1, 2]  # a dotted line at each epoch
    assert acc_ax.get_title().startswith("Accuracy: NLFT on nlft-train.jsonl")
