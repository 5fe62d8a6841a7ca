"""Running the study: the base model, the trained cells, and the selection of the default NLFT preset.

A cell is one arm trained at one size with one seed on one task, in ``<study>/<task>/cells/<cell>/``::

    run/         the ``nlft train`` run (validation accuracy every eval_every steps in eval_history.jsonl; the
                 best checkpoint kept as adapter/)
    heldout/     predictions and metrics of the kept checkpoint on the held-out questions
    result.json  the cell's record (written last: a cell with one is done)

Several processes can run one study side by side: each claims a cell by locking its folder and skips the
cells another process holds.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from nlft.study.config import StudyConfig, arm_of, budget, eval_every, protocol_sha, slug
from nlft.study.data import _log, build_task_data, data_dir, draw, ids_sha, import_task_data, records_sha
from nlft.utils.files import DataError, atomic_write_json, read_jsonl

RESULT = "result.json"


def cell_name(arm: str, n: int, seed: int) -> str:
    """``nlft-n50-s0``; a selection candidate's cells are ``cand_<name>-n50-s0``."""
    return f"{arm.replace(':', '_')}-n{n}-s{seed}"


def cell_dir(root: Path, task: str, arm: str, n: int, seed: int) -> Path:
    return root / slug(task) / "cells" / cell_name(arm, n, seed)


def _claim(folder: Path) -> bool:
    """Lock ``folder`` for this process; False when another process holds it."""
    from nlft.utils.files import lock_dir

    try:
        lock_dir(folder)
    except DataError:
        return False
    return True


def _score(cfg: StudyConfig, task: str, root: Path, rows_file: str, out_dir: Path, adapter: str | None
           ) -> dict[str, Any]:
    """Greedy accuracy of the model (with ``adapter``) on a question file, under the task's prompt."""
    from nlft.eval.accuracy import evaluate
    from nlft.tasks.sources import load_questions
    from nlft.utils.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, adapter=adapter)
    if adapter:
        model = model.merge_and_unload()  # the same outputs up to float rounding, no LoRA matmuls per token
    template = (data_dir(root, task) / "prompt.txt").read_text(encoding="utf-8")
    return evaluate(model, tokenizer, load_questions(str(data_dir(root, task) / rows_file)), out_dir=out_dir,
                    batch_size=cfg.eval_batch_size, max_new_tokens=cfg.eval_max_new_tokens, progress=False,
                    source=str(out_dir), template=template)


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    from nlft.eval.accuracy import intervals

    return {"eval_n": metrics["n"], "accuracy_strict": metrics["accuracy_strict"],
            "accuracy_flexible": metrics["accuracy_flexible"], **intervals(metrics)}


def run_base(root: Path, cfg: StudyConfig, task: str) -> dict[str, Any] | None:
    """The base model on the validation and held-out questions of ``task`` (cached in ``base/``)."""
    cell = root / slug(task) / "cells" / "base"
    if (cell / RESULT).exists():
        return json.loads((cell / RESULT).read_text())
    if not _claim(cell):
        return None
    _log(f"{slug(task)}: the base model on the validation and held-out questions")
    start = time.perf_counter()
    val = _score(cfg, task, root, "val.jsonl", cell / "val", None)
    held = _score(cfg, task, root, "heldout.jsonl", cell / "heldout", None)
    result = {"cell": "base", "task": task, "arm": "base", "n": 0, "seed": None, **_figures(held),
              "val_flexible": val["accuracy_flexible"], "val_strict": val["accuracy_strict"],
              "eval_s": time.perf_counter() - start, "protocol_sha": protocol_sha(cfg)}
    atomic_write_json(cell / RESULT, result)
    return result


def resolved_settings(arm_name: str) -> dict[str, Any] | None:
    """The NLFT settings an arm trains with (its preset's, with its own on top); None for the other methods."""
    from nlft.train.config import DEFAULT_PRESET, PRESETS

    arm = arm_of(arm_name)
    if arm.method != "nlft":
        return None
    preset = DEFAULT_PRESET if arm.preset == "default" else arm.preset or DEFAULT_PRESET
    return {"preset": preset, **PRESETS[preset], **arm.settings}


def _train_key(cfg: StudyConfig, arm_name: str, train_sha: str, n: int, seed: int) -> dict[str, Any]:
    """What decides a trained run: two cells with equal keys train the same model (a selection candidate's cell
    serves the table's arm with the same settings)."""
    arm = arm_of(arm_name)
    return {"method": arm.method, "sft_data": arm.sft_data, "correct_only": arm.correct_only,
            **({"static_weights": True} if arm.static_weights else {}), "settings": resolved_settings(arm_name),
            "train_ids_sha": train_sha, "n": n, "seed": seed,
            "budget": budget(n, cfg), "eval_every": eval_every(n, cfg), "protocol_sha": protocol_sha(cfg)}


def _effective(key: dict[str, Any] | None) -> dict[str, Any] | None:
    """A train key without the preset's name: ``nlft_robust`` and the candidate with the same settings train alike."""
    if not key or not key.get("settings"):
        return key
    return {**key, "settings": {k: v for k, v in key["settings"].items() if k != "preset"}}


def _same_run(root: Path, task: str, key: dict[str, Any], here: Path) -> Path | None:
    """A finished cell of ``task`` whose run has the same :func:`_train_key` (up to the preset's name), other than
    ``here``."""
    for path in sorted((root / slug(task) / "cells").glob(f"*/{RESULT}")):
        if path.parent != here and _effective(json.loads(path.read_text()).get("train_key")) == _effective(key) and \
                (path.parent / "run" / "adapter").is_dir():
            return path.parent
    return None


def run_cell(root: Path, cfg: StudyConfig, task: str, arm_name: str, n: int, seed: int, *,
             heldout: bool = True) -> dict[str, Any] | None:
    """Train ``arm_name`` on the size-``n`` draw of ``seed`` within the budget, keep its best checkpoint on the
    validation questions, and (``heldout``) score that checkpoint on the held-out questions.

    Cached: a done cell returns its ``result.json``; a cell that is done but for its held-out score (a
    selection candidate) gets it now. Returns None when another process holds the cell.
    """
    cell = cell_dir(root, task, arm_name, n, seed)
    done = json.loads((cell / RESULT).read_text()) if (cell / RESULT).exists() else None
    if done is not None and (done.get("accuracy_flexible") is not None or not heldout or done.get("skipped")):
        return done
    if not _claim(cell):
        return None
    arm = arm_of(arm_name)
    records = list(read_jsonl(draw(root, task, n, seed)))
    train = [r for r in records if r["correct"]] if arm.correct_only else records
    rows = sum(bool(r["correct"]) for r in train) if arm.sft_data == "outputs" else len(train)
    key = _train_key(cfg, arm_name, ids_sha(records), n, seed)
    result: dict[str, Any] = done or {
        "cell": cell_name(arm_name, n, seed), "task": task, "arm": arm_name, "method": arm.method, "n": n,
        "seed": seed, "train_rows": rows, "train_ids_sha": ids_sha(records),
        "train_records_sha": records_sha(records), "budget": budget(n, cfg),
        "eval_every": eval_every(n, cfg), "settings": resolved_settings(arm_name), "train_key": key,
        "protocol_sha": protocol_sha(cfg)}
    if rows == 0:
        _log(f"{slug(task)}/{result['cell']}: nothing to train on; the cell stays empty")
        result.update(accuracy_flexible=None, accuracy_strict=None, skipped="no training rows")
        atomic_write_json(cell / RESULT, result)
        return result
    run_dir = cell / "run"
    if done is None:
        source = _same_run(root, task, key, cell)
        if source is not None and not (run_dir / "manifest.json").exists():
            _log(f"{slug(task)}/{result['cell']}: the same training as {source.name}: its run is reused")
            shutil.copytree(source / "run", run_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoint-*", ".nlft.lock"))
        result.update(_train(cfg, task, root, arm_name, train, cell, run_dir, n, seed))
        atomic_write_json(cell / RESULT, result)  # trained; the held-out score may follow later
    if heldout:
        _log(f"{slug(task)}/{result['cell']}: the kept checkpoint on the held-out questions")
        start = time.perf_counter()
        metrics = _score(cfg, task, root, "heldout.jsonl", cell / "heldout", str(run_dir / "adapter"))
        result.update(_figures(metrics), eval_s=time.perf_counter() - start)
        atomic_write_json(cell / RESULT, result)
        _log(f"{slug(task)}/{result['cell']}: held-out accuracy flexible {result['accuracy_flexible']:.3f} "
             f"(kept step {result['kept_step']} of {result['optimizer_steps']})")
    return result


def _train(cfg: StudyConfig, task: str, root: Path, arm_name: str, train: list[dict[str, Any]], cell: Path,
           run_dir: Path, n: int, seed: int) -> dict[str, Any]:
    """Train (or finish training) one cell's run; its steps, validation curve and kept step."""
    from nlft.train import TrainOptions, run_training
    from nlft.utils.files import atomic_write_jsonl

    arm = arm_of(arm_name)
    data = cell / "train.jsonl"
    if not data.exists():
        atomic_write_jsonl(data, train)
    manifest_path = run_dir / "manifest.json"
    finished = manifest_path.exists() and json.loads(manifest_path.read_text()).get("final")
    start = time.perf_counter()
    if not finished:
        _log(f"{slug(task)}/{cell.name}: training {arm_name} for {budget(n, cfg)} steps")
        settings = resolved_settings(arm_name) or {}
        inputs: dict[str, Any] = {"data": str(data)}
        if arm.static_weights:
            export_start = time.perf_counter()
            inputs = {"from_weights": str(_export_weights(cfg, train, settings, cell))}
            _log(f"{slug(task)}/{cell.name}: weights exported in {time.perf_counter() - export_start:.0f} s")
            settings = {}
        opts = TrainOptions(
            method=arm.method, **inputs, out=str(run_dir), model=cfg.model, lr=cfg.lr,
            batch_size=cfg.batch_size, seed=seed, sft_data=arm.sft_data or "outputs", max_steps=budget(n, cfg),
            epochs=1000.0, save_total_limit=1, resume=run_dir.exists() and any(run_dir.glob("checkpoint-*")),
            logging_steps=5, no_progress=True, eval_steps=eval_every(n, cfg),
            eval_data=str(data_dir(root, task) / "val.jsonl"), eval_batch_size=cfg.eval_batch_size,
            eval_max_new_tokens=cfg.eval_max_new_tokens, eval_merged=True, keep="best",
            best_metric="accuracy_flexible", **settings)
        run_training(opts)
        from nlft.report.plots import try_plot_run

        try_plot_run(run_dir)
    manifest = json.loads(manifest_path.read_text())
    curve = [{"step": e["global_step"], "flexible": e["accuracy_flexible"], "strict": e["accuracy_strict"]}
             for e in read_jsonl(run_dir / "eval_history.jsonl")]
    kept = manifest.get("kept") or {}
    drift = manifest.get("drift_monitor") or {}
    return {"optimizer_steps": manifest.get("global_step"), "val_curve": curve, "kept_step": kept.get("global_step"),
            "kept_val_flexible": kept.get("value"), "last_val_flexible": curve[-1]["flexible"] if curve else None,
            "drift": {"fired": bool(drift.get("fired")), "step": drift.get("step"), "restored": drift.get("restored")}
            if drift else None, "train_s": (manifest.get("metrics") or {}).get("train/train_runtime")
            or time.perf_counter() - start}


def _export_weights(cfg: StudyConfig, train: list[dict[str, Any]], settings: dict[str, Any], cell: Path) -> Path:
    """``nlft weights`` of a cell's training rows with the initial model (resumed if interrupted)."""
    from nlft.train.weights import weights_config, write_weights
    from nlft.utils.models import load_model, load_tokenizer

    settings = dict(settings)
    config = weights_config(settings.pop("preset"), **settings)
    out = cell / "weights.jsonl"
    write_weights(train, out, tokenizer=load_tokenizer(cfg.model), model=load_model(cfg.model), model_name=cfg.model,
                  config=config, batch_size=cfg.batch_size, source=str(cell / "train.jsonl"), progress=False)
    return out


def cells_of(cfg: StudyConfig) -> list[tuple[str, str, int, int]]:
    """Every ``(task, arm, n, seed)`` of the tables, seed by seed (a study cut short has whole seeds), the main task
    first."""
    out = []
    for seed in cfg.seeds:
        for task in cfg.tasks:
            for n in cfg.sizes_of(task):
                out += [(task, arm, n, seed) for arm in cfg.arms_of(task)]
    return out


def selection_cells(cfg: StudyConfig) -> list[tuple[str, str, int, int]]:
    """Every ``(task, arm, n, seed)`` the selection reads: each candidate and SFT on the same outputs, on every task
    at ``select_size`` with the select seeds."""
    return [(task, arm, cfg.select_size, seed) for seed in cfg.select_seeds for task in cfg.tasks
            for arm in ("sft_outputs", *(f"cand:{c}" for c in cfg.candidates))]


def matches(only: list[str] | None, task: str, arm: str, n: int, seed: int) -> bool:
    """Whether a cell is among ``--only``: every word names it (a cell name, task, arm, ``n50``, ``s1``)."""
    tokens = {cell_name(arm, n, seed), slug(task), task, arm, arm.replace(":", "_"), f"n{n}", f"s{seed}"}
    return not only or all(o in tokens for o in only)


def run_study(root: str | Path, cfg: StudyConfig, *, only: list[str] | None = None, select: bool = False,
              data_from: str | Path | None = None) -> list[dict[str, Any]]:
    """Build every task's data (``data_from``: unpacked from that folder's ``task-data/`` where it has the task),
    then run the base model and every cell of the tables (``select``: of the preset selection, scored on
    validation questions only) that is not done yet; returns the results run or found."""
    from dataclasses import asdict

    from nlft.utils.resume import check_run_args

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # Candidates and selection seeds may be added to a study: they add cells and change none.
    check_run_args(root, {k: v for k, v in asdict(cfg).items() if k not in ("candidates", "select_seeds")},
                   name="study.json")
    for task in cfg.tasks:
        if data_from is not None:
            import_task_data(Path(data_from), root, task, cfg)
        build_task_data(root, cfg, task)
        run_base(root, cfg, task)
    results = []
    for task, arm, n, seed in (selection_cells(cfg) if select else cells_of(cfg)):
        if matches(only, task, arm, n, seed):
            got = run_cell(root, cfg, task, arm, n, seed, heldout=not select)
            if got is not None:
                results.append(got)
    return results
