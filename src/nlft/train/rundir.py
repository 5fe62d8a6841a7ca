"""Run directories: the exact config, a manifest (versions, seed, machine, time and memory) and logs.

A run directory holds::

    config.yaml          the resolved configuration, exactly as used
    manifest.json        package versions, seed, git commit, machine, per-epoch wall time and peak memory, metrics
    log_history.jsonl    one JSON object per Trainer log entry (step, epoch, loss, nlft/* ...)
    eval_history.jsonl   one JSON object per evaluation after an epoch (epoch, accuracy_strict, ...)
    checkpoint-*/        Trainer checkpoints (resumable)
    adapter / model      the final weights

Peak memory per epoch comes from :class:`nlft.train.memory.PeakMemory`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from nlft.train.memory import PeakMemory
from nlft.utils.files import append_jsonl, atomic_write_json, atomic_write_text, read_yaml

PACKAGES = ("nlft", "torch", "transformers", "peft", "accelerate", "datasets", "trl", "vllm")
LOG_HISTORY = "log_history.jsonl"
EVAL_HISTORY = "eval_history.jsonl"
MANIFEST = "manifest.json"
CONFIG = "config.yaml"
EVAL_KEYS = ("accuracy_strict", "ci95_strict", "accuracy_flexible", "ci95_flexible", "n")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out.get("nlft") is None:
        from nlft import __version__

        out["nlft"] = __version__
    return out


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (this package by default), '+dirty' when modified."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Host, OS, Python, CPU count, total memory and the GPUs torch sees."""
    import torch

    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_total_bytes"] = psutil.virtual_memory().total
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpus"] = [
            {"name": torch.cuda.get_device_name(i), "memory_bytes": torch.cuda.get_device_properties(i).total_memory}
            for i in range(torch.cuda.device_count())
        ]
    else:
        info["gpus"] = []
    return info


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    return str(value)


read_config = read_yaml  # a run's config.yaml, or any --config file, into a dict


def write_config(run_dir: str | os.PathLike, config: dict[str, Any]) -> Path:
    """Write the resolved configuration as ``config.yaml`` (keys in the given order)."""
    import yaml

    path = Path(run_dir) / CONFIG
    atomic_write_text(path, yaml.safe_dump(_jsonable(config), sort_keys=False, allow_unicode=True))
    return path


class RunRecorder(TrainerCallback):
    """Writes ``log_history.jsonl``, per-epoch wall time and peak memory, and ``manifest.json``.

    ``manifest.json`` is rewritten (atomically) at the start, after each epoch and at the end of
    training, so that an interrupted run still documents what it did. On resume, epochs already
    recorded in an existing manifest are kept.
    """

    def __init__(self, run_dir: str | os.PathLike, *, method: str, seed: int, config: dict[str, Any] | None = None
                 ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.memory = PeakMemory()
        self._epoch_start = 0.0
        self._train_start = 0.0
        self._in_epoch = False
        self.phase: str | None = None  # e.g. ReFT's "warmup" and "rl"; recorded with epochs and logs when set
        old = self._read_manifest()
        self.manifest: dict[str, Any] = {
            "method": method,
            "seed": seed,
            "created": old.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "git_commit": git_commit(),
            "packages": package_versions(),
            "machine": machine_info(),
            "command": sys.argv,
            "memory_kind": PeakMemory.kind(),
            "epochs": old.get("epochs", []),
            "metrics": old.get("metrics", {}),
        }
        if config is not None:
            self.manifest["config"] = _jsonable(config)

    def _read_manifest(self) -> dict[str, Any]:
        path = self.run_dir / MANIFEST
        if path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return {}
        return {}

    def write_manifest(self) -> None:
        """Write ``manifest.json``; in a distributed run only the main process (``RANK`` 0) writes."""
        if int(os.environ.get("RANK", "0") or 0) == 0:
            atomic_write_json(self.run_dir / MANIFEST, self.manifest)

    def add_metrics(self, metrics: dict[str, Any]) -> None:
        """Merge ``metrics`` into the manifest's ``metrics`` and write it."""
        self.manifest["metrics"].update(_jsonable(metrics))
        self.write_manifest()

    # ---- callback hooks ------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._train_start = time.perf_counter()
        self.write_manifest()

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch_start = time.perf_counter()
        self._in_epoch = True
        self.memory.start()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._in_epoch = False
        kind, peak = self.memory.stop()
        epoch = round(state.epoch or 0.0, 4)
        entry = {"epoch": epoch, "global_step": state.global_step,
                 "wall_time_s": time.perf_counter() - self._epoch_start, "peak_memory_bytes": peak, "memory_kind": kind}
        if self.phase:
            entry["phase"] = self.phase
        self.manifest["epochs"] = [e for e in self.manifest["epochs"]
                                   if (e["epoch"], e.get("phase")) != (epoch, self.phase)] + [entry]
        self.write_manifest()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        entry = {"step": state.global_step, "epoch": state.epoch, **_jsonable(logs)}
        if self.phase:
            entry["phase"] = self.phase
        append_jsonl(self.run_dir / LOG_HISTORY, [entry])

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._in_epoch:  # training stopped before the epoch's end hook
            self.on_epoch_end(args, state, control)
        self.manifest["train_wall_time_s"] = time.perf_counter() - self._train_start
        self.manifest["global_step"] = state.global_step
        self.write_manifest()


def append_eval_history(run_dir: str | os.PathLike, epoch: float, metrics: dict[str, Any]) -> None:
    """Append one evaluation (``epoch``, ``accuracy_strict``, ``accuracy_flexible``, ``n`` ...) to the run."""
    append_jsonl(Path(run_dir) / EVAL_HISTORY, [{"epoch": epoch, **_jsonable(metrics)}])


def portable_path(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """``path`` as a run's manifest stores it: relative to ``run_dir`` when inside it, else absolute.

    A name that is not an existing path (a Hub model id) is returned unchanged.
    """
    p = Path(path)
    if not p.exists():
        return str(path)
    p = p.resolve()
    try:
        return str(p.relative_to(Path(run_dir).resolve()))
    except ValueError:
        return str(p)


def resolve_run_path(value: str | None, run_dir: str | os.PathLike) -> str | None:
    """Inverse of :func:`portable_path`: a manifest's path, read from any working directory.

    A path that exists relative to the run directory is joined to it; anything else (absolute paths,
    Hub ids, an older manifest's path relative to where the training ran) is returned unchanged.
    """
    if value is None or Path(value).is_absolute():
        return value
    joined = Path(run_dir) / value
    return str(joined) if joined.exists() else value


def run_prompt(run_dir: str | os.PathLike) -> str | None:
    """The prompt a run of `nlft train` trained under (its manifest), or None for runs that do not record it."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return None
    prompt = json.loads(path.read_text(encoding="utf-8")).get("prompt") or {}
    return prompt.get("template")


def run_final(run_dir: str | os.PathLike, model: str | None = None, adapter: str | None = None
              ) -> tuple[str, str | None]:
    """The final ``(model, adapter)`` recorded in a run's manifest, readable from any folder; explicit values win."""
    from nlft.utils.files import DataError

    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise DataError("not a run directory of `nlft train` (no manifest.json)", path=run_dir)
    final = json.loads(path.read_text(encoding="utf-8")).get("final")
    if not final:
        raise DataError("the run has not finished: its manifest has no final model", path=path, field="final")
    # The manifest's paths are relative to the run directory: the command works from any folder.
    return (model or resolve_run_path(final["model"], run_dir),
            adapter or resolve_run_path(final.get("adapter"), run_dir))


def run_base_model(run: str) -> str | None:
    """The model a run without an adapter started from (its manifest's ``config.model``), or None."""
    manifest = json.loads((Path(run) / MANIFEST).read_text(encoding="utf-8"))
    return (manifest.get("config") or {}).get("model")


def last_checkpoint(run_dir: str | os.PathLike) -> str | None:
    """The newest *complete* ``checkpoint-N`` folder of a run directory, or None.

    The Trainer writes ``trainer_state.json`` last when it saves a checkpoint: a folder without a
    readable one was cut short by a crash during the save and is skipped.
    """
    import re

    path = Path(run_dir)
    if not path.is_dir():
        return None
    found = []
    for sub in path.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", sub.name)
        if match and sub.is_dir():
            try:
                json.loads((sub / "trainer_state.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            found.append((int(match.group(1)), sub))
    return str(max(found)[1]) if found else None
