"""Cost of one training step: SFT vs NLFT (dynamic and cached view probabilities) vs a reference-style step.

Usage::

    PYTHONPATH=src python benchmarks/step_cost.py --json step_cost.json            # CPU, SmolLM2-135M
    PYTHONPATH=src python benchmarks/step_cost.py --long-prompt --kinds mixed --json long.json  # shared prefix
    PYTHONPATH=src python benchmarks/step_cost.py --model llama3-8b-shape --json gpu.json   # needs CUDA

Every configuration trains the same LoRA (r 16 on the MLP) on the same batches with the trainer's own
``training_step`` (forward, backward) followed by the optimizer step. Configurations:

- ``sft_nll``: :class:`nlft.NLFTTrainer` with ``loss_type="nll"`` (plain cross-entropy, every scale 1),
  every row's prompt in full (``share_prefix=False``: "SFT naive");
- ``sft_shared``: the same with the batch's common prompt prefix run once (``share_prefix=True``);
- ``trl_sft``: TRL's ``SFTTrainer`` on the same tokens (completion-only loss; it shares no prefix);
- ``nlft_dynamic``: NLFT, view probabilities measured every step, every prompt in full ("naive");
- ``nlft_dynamic_shared``: the same with the shared prefix (the default of ``NLFTConfig``);
- ``sft_packed``, ``nlft_dynamic_packed``: the shared-prefix configurations with padding-free rows
  (``padding_free=True``: packed rows, block-causal mask);
- ``nlft_cached``: NLFT, view probabilities computed once before training (shared prefix);
- ``refstyle``: the reference-style step of ``benchmarks/refstyle.py``.

X_base is the paper's solve prompt (appendix A.2, five worked examples: about 460 tokens under
SmolLM2's chat template before the question) unless ``--prompt`` says otherwise; ``--long-prompt``
names that workload and adds the shared-prefix keys and targets to the report.

Batch kinds: ``correct`` (all correct outputs), ``incorrect`` (all incorrect) and ``mixed`` (2:1).
Time: after warm-up, configurations and batch kinds are interleaved round-robin so that noise from
other processes hits all of them alike; the median of the repetitions is reported. Peak memory: on
CPU each (configuration, batch kind) runs in a fresh child process and reports its peak resident set
(VmHWM, reset once the model and trainer are built); on CUDA, ``torch.cuda.max_memory_allocated``
after a reset. Both include the model weights, as a GPU's memory figure does; ``step_mb`` is the part
above what was resident before the first step. On CPU the reference-style step first runs in a
child process limited to 90% of the memory available: where it does not fit (the long prompt on a
24 GiB machine) it is reported with ``"error"`` and no time, and the other configurations run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CONFIGS = ("sft_nll", "sft_shared", "sft_packed", "trl_sft", "nlft_dynamic", "nlft_dynamic_shared",
           "nlft_dynamic_packed", "nlft_cached", "refstyle")
SHARED = ("sft_shared", "sft_packed", "nlft_dynamic_shared", "nlft_dynamic_packed", "nlft_cached")
PACKED = ("sft_packed", "nlft_dynamic_packed")
KINDS = ("correct", "incorrect", "mixed")


# ---- building ------------------------------------------------------------------------------------


def batch_indices(kind: str, batch_size: int, single_size: int = 1) -> list[int]:
    """Row indices of a batch: records hold ``batch_size`` correct rows, then ``batch_size`` incorrect ones.

    ``correct`` and ``incorrect`` batches have ``single_size`` rows, ``mixed`` has ``batch_size`` (2:1).
    """
    if kind == "correct":
        return list(range(single_size))
    if kind == "incorrect":
        return list(range(batch_size, batch_size + single_size))
    if kind == "mixed":
        n_correct = round(batch_size * 2 / 3)
        return list(range(n_correct)) + list(range(batch_size, 2 * batch_size - n_correct))
    raise ValueError(f"batch kind must be one of {', '.join(KINDS)}, got {kind!r}")


def nlft_args(config: str, batch_size: int, output_dir: str, bf16: bool, prompt: str = "solve") -> Any:
    from nlft.tasks.prompts import TEMPLATES
    from nlft.train.config import NLFTConfig

    loss_type = "nll" if config in ("sft_nll", "sft_shared", "sft_packed") else "nlft"
    view_probs = "cached" if config == "nlft_cached" else "dynamic"
    # Checkpointing is switched on the shared model (see build_shared); the steps here bypass Trainer.train().
    return NLFTConfig(
        output_dir=output_dir, loss_type=loss_type, view_probs=view_probs, per_device_train_batch_size=batch_size,
        report_to=[], bf16=bf16, use_cpu=not bf16, share_prefix=config in SHARED, base_template=TEMPLATES[prompt],
        padding_free=config in PACKED,
    )


class Bench:
    """One configuration: its trainer and its collated batches, ready to step."""

    def __init__(self, config: str, model: Any, tokenizer: Any, records: list[dict], batch_size: int,
                 single_size: int, output_dir: str, bf16: bool, prompt: str = "solve") -> None:
        from refstyle import RefStyleTrainer

        from nlft.train.trainer import NLFTTrainer

        self.config = config
        self.cache_fill_s: float | None = None
        args = nlft_args(config, batch_size, output_dir, bf16, prompt)
        if config == "trl_sft":
            # Tokenize exactly as NLFT does, so that both see the same tokens.
            ref = NLFTTrainer(model, args=nlft_args("sft_nll", batch_size, output_dir, bf16, prompt),
                              train_dataset=records, processing_class=tokenizer)
            self.trainer = self._trl_trainer(model, tokenizer, ref.train_dataset, batch_size, output_dir, bf16)
        elif config == "refstyle":
            self.trainer = RefStyleTrainer(model, args=args, train_dataset=records, processing_class=tokenizer)
        elif config in CONFIGS:
            self.trainer = NLFTTrainer(model, args=args, train_dataset=records, processing_class=tokenizer)
        else:
            raise ValueError(f"config must be one of {', '.join(CONFIGS)}, got {config!r}")
        self.trainer.create_optimizer_and_scheduler(num_training_steps=1000)
        if config == "nlft_cached":
            start = time.perf_counter()
            self.trainer.fill_view_cache()
            self.cache_fill_s = time.perf_counter() - start
        dataset = self.trainer.train_dataset
        self.batches = {}
        for kind in KINDS:
            feats = [dataset[i] for i in batch_indices(kind, batch_size, single_size)]
            batch = self.trainer.data_collator(feats)
            labels = batch["labels"][:, 1:] if config == "trl_sft" else batch["labels"]
            self.batches[kind] = (batch, int((labels != -100).sum()))

    @staticmethod
    def _trl_trainer(model: Any, tokenizer: Any, tokenized: Any, batch_size: int, output_dir: str, bf16: bool
                     ) -> Any:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        rows = [{"input_ids": p + r, "labels": [-100] * len(p) + r}
                for p, r in zip(tokenized["base_prompt_ids"], tokenized["response_ids"])]
        args = SFTConfig(output_dir=output_dir, per_device_train_batch_size=batch_size, report_to=[], max_length=None,
                         learning_rate=5e-5, lr_scheduler_type="cosine", bf16=bf16, use_cpu=not bf16)
        return SFTTrainer(model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)

    def step(self, kind: str) -> float:
        """One optimisation step on the ``kind`` batch; returns its wall time in seconds."""
        import torch

        batch, n_items = self.batches[kind]
        trainer = self.trainer
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.training_step(trainer.model, batch, n_items)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


def build_shared(args: argparse.Namespace) -> tuple[Any, Any, list[dict]]:
    """The tokenizer, the LoRA-wrapped model (shared by every configuration) and the records."""
    import torch
    from peft import get_peft_model
    from workload import load_workload_model, lora_config, realistic_records

    from nlft.utils.models import load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer("smollm2")
    records = realistic_records(tokenizer, 2 * args.batch_size, correct_share=0.5)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = get_peft_model(load_workload_model(args.model, device), lora_config(args.lora_dropout))
    if args.gradient_checkpointing:
        # Trainer.train() would do this; the steps here are driven directly.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return tokenizer, model, records


# ---- memory --------------------------------------------------------------------------------------


def guarded_child_memory(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`child_memory` under ``--mem-limit-mb``: running out of memory there is a result, not a crash."""
    if args.mem_limit_mb is None:
        return child_memory(args)
    import resource

    limit = args.mem_limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        return child_memory(args)
    except (MemoryError, RuntimeError) as err:  # torch's CPU allocator raises RuntimeError "can't allocate"
        if isinstance(err, RuntimeError) and "alloc" not in str(err):
            raise
        return {"error": f"out of memory: does not fit in {args.mem_limit_mb} MB (90% of the memory available)"}


def _proc_kb(field: str, path: str = "/proc/self/status") -> int:
    """A ``kB`` field of a /proc file (``VmHWM`` of /proc/self/status, ``MemAvailable`` of /proc/meminfo)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {path}")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set (VmHWM) of this process; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_memory(args: argparse.Namespace) -> dict[str, float]:
    """Peak resident memory of a few steps of one configuration on one batch kind, in this fresh process."""
    import resource

    import torch

    torch.set_num_threads(args.threads)
    tokenizer, model, records = build_shared(args)
    with tempfile.TemporaryDirectory() as out:
        bench = Bench(args.child[0], model, tokenizer, records, args.batch_size, args.single_size, out, False,
                      args.prompt)
        exact = _reset_peak_rss()
        before = _proc_kb("VmRSS")
        for _ in range(2):
            bench.step(args.child[1])
        peak = _proc_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mb": peak / 1024, "step_mb": (peak - before) / 1024, "peak_reset": exact}


def _child_cmd(args: argparse.Namespace, config: str, kind: str) -> list[str]:
    cmd = [sys.executable, __file__, "--child", config, kind, "--model", args.model,
           "--batch-size", str(args.batch_size), "--single-size", str(args.single_size),
           "--threads", str(args.threads), "--prompt", args.prompt, "--lora-dropout", str(args.lora_dropout)]
    return cmd + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])


def run_child(cmd: list[str], mem_limit_mb: int | None = None) -> dict[str, Any]:
    """Run a ``--child`` memory run; under ``mem_limit_mb`` (its address space) a run that does not fit
    reports ``{"error": ...}`` instead of drawing the machine's out-of-memory killer."""
    if mem_limit_mb is not None:
        cmd = [*cmd, "--mem-limit-mb", str(mem_limit_mb)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory run {' '.join(cmd[2:5])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe_fits(args: argparse.Namespace, config: str, kinds: list[str]) -> dict[tuple[str, str], dict]:
    """Memory runs of ``config`` under a limit of 90% of the memory available now, before any timing.

    For the reference-style step, which keeps a full-vocabulary softmax of every view with gradients:
    with a long prompt it can need more memory than the machine has, and is then reported as not
    fitting rather than killed (with the whole benchmark) by the kernel.
    """
    limit = int(_proc_kb("MemAvailable", "/proc/meminfo") / 1024 * 0.9)
    out = {}
    for kind in kinds:
        out[(config, kind)] = result = run_child(_child_cmd(args, config, kind), limit)
        print(f"probe  {config:13s} {kind:9s} {result.get('error') or 'fits'}", file=sys.stderr, flush=True)
    return out


def cpu_memory(args: argparse.Namespace, configs: list[str], kinds: list[str],
               known: dict[tuple[str, str], dict] | None = None) -> dict[tuple[str, str], dict]:
    """Run :func:`child_memory` in a fresh process per (configuration, batch kind) not ``known`` already."""
    results = dict(known or {})
    for config in configs:
        for kind in kinds:
            if (config, kind) in results:
                continue
            results[(config, kind)] = run_child(_child_cmd(args, config, kind))
            print(f"memory {config:13s} {kind:9s} peak {results[(config, kind)]['peak_mb']:8.0f} MB "
                  f"step {results[(config, kind)]['step_mb']:7.0f} MB", file=sys.stderr, flush=True)
    return results


# ---- report --------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarise(times: dict, memory: dict, args: argparse.Namespace, meta: dict) -> dict:
    per_kind: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for kind in args.kinds:
        entry = {}
        for config in args.configs:
            samples = times[(config, kind)]
            mem = memory.get((config, kind), {})
            entry[config] = {"step_s": statistics.median(samples) if samples else None, "steps_s": samples,
                             "peak_mb": mem.get("peak_mb"), "step_mb": mem.get("step_mb")}
            if "error" in mem:  # did not fit in memory: not timed
                entry[config]["error"] = mem["error"]
        sft = min((c for c in ("sft_nll", "trl_sft") if c in entry), key=lambda c: entry[c]["step_s"], default=None)
        if sft is not None:
            entry["sft"] = {**entry[sft], "from": sft}
        per_kind[kind] = entry
        r: dict[str, float | None] = {}
        base = entry.get("sft", {})
        for config in ("nlft_dynamic", "nlft_cached", "refstyle", "trl_sft", "sft_nll"):
            if config in entry:
                r[f"{config}_vs_sft_time"] = _ratio(entry[config]["step_s"], base.get("step_s"))
                r[f"{config}_vs_sft_peak"] = _ratio(entry[config]["peak_mb"], base.get("peak_mb"))
        if "refstyle" in entry and "nlft_dynamic" in entry:
            r["refstyle_vs_dynamic_time"] = _ratio(entry["refstyle"]["step_s"], entry["nlft_dynamic"]["step_s"])
            r["refstyle_vs_dynamic_peak"] = _ratio(entry["refstyle"]["peak_mb"], entry["nlft_dynamic"]["peak_mb"])
            r["refstyle_vs_dynamic_step_mb"] = _ratio(entry["refstyle"]["step_mb"], entry["nlft_dynamic"]["step_mb"])
        ratios[kind] = r
    report: dict[str, Any] = {**meta, "per_kind": per_kind, "ratios": ratios}
    headline = "mixed" if "mixed" in per_kind else args.kinds[0]
    report["headline_batch"] = headline
    for config in (*args.configs, "sft"):
        if config in per_kind[headline]:
            report[f"{config}_step_s"] = per_kind[headline][config]["step_s"]
            report[f"{config}_peak_mb"] = per_kind[headline][config]["peak_mb"]
    report["targets"] = targets(ratios)
    if getattr(args, "long_prompt", False):
        for name, config in (("sft_naive", "sft_nll"), ("sft_shared", "sft_shared"), ("sft_packed", "sft_packed"),
                             ("nlft_dynamic_naive", "nlft_dynamic"), ("nlft_dynamic_shared", "nlft_dynamic_shared"),
                             ("nlft_dynamic_packed", "nlft_dynamic_packed")):
            if config in per_kind[headline]:
                report[f"{name}_step_s"] = per_kind[headline][config]["step_s"]
                report[f"{name}_peak_mb"] = per_kind[headline][config]["peak_mb"]
        report["targets"].update(shared_targets(per_kind[headline], headline))
    return report


def shared_targets(entry: dict, kind: str) -> dict[str, dict]:
    """The shared-prefix targets on the long-prompt workload, each with its measured value."""
    def get(config: str, key: str) -> float | None:
        return entry.get(config, {}).get(key)

    checks = [
        ("shared_dynamic_vs_sft_naive_time", get("nlft_dynamic_shared", "step_s"), get("sft_nll", "step_s"), 1.0),
        ("shared_dynamic_vs_sft_shared_time", get("nlft_dynamic_shared", "step_s"), get("sft_shared", "step_s"), 1.5),
        ("shared_dynamic_vs_sft_shared_peak", get("nlft_dynamic_shared", "peak_mb"), get("sft_shared", "peak_mb"),
         1.05),
    ]
    # Padding-free rows, measured against the padded ones (figures, no target).
    packed = [("packed_vs_padded_sft_time", get("sft_packed", "step_s"), get("sft_shared", "step_s"), None),
              ("packed_vs_padded_dynamic_time", get("nlft_dynamic_packed", "step_s"),
               get("nlft_dynamic_shared", "step_s"), None)]
    out = {}
    for name, a, b, limit in checks + packed:
        value = _ratio(a, b)
        out[name] = {"ratio": name, "batch": kind, "value": value, "limit": "-" if limit is None else f"<= {limit}",
                     "ok": None if value is None or limit is None else value <= limit}
    return out


def targets(ratios: dict) -> dict[str, dict]:
    """The acceptance targets, each with its measured value and whether it holds."""
    checks = [
        ("dynamic_time_mixed", "mixed", "nlft_dynamic_vs_sft_time", "<=", 1.8),
        ("dynamic_peak_mixed", "mixed", "nlft_dynamic_vs_sft_peak", "<=", 1.05),
        ("refstyle_time_mixed", "mixed", "refstyle_vs_dynamic_time", ">=", 2.5),
        ("refstyle_peak_mixed", "mixed", "refstyle_vs_dynamic_peak", ">=", 2.0),
        ("dynamic_time_incorrect", "incorrect", "nlft_dynamic_vs_sft_time", "<=", 2.0),
        ("dynamic_time_correct", "correct", "nlft_dynamic_vs_sft_time", "<=", 1.6),
    ]
    checks += [(f"dynamic_peak_{k}", k, "nlft_dynamic_vs_sft_peak", "<=", 1.1) for k in ("correct", "incorrect")]
    out = {}
    for name, kind, key, op, limit in checks:
        value = ratios.get(kind, {}).get(key)
        ok = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out[name] = {"ratio": key, "batch": kind, "value": value, "limit": f"{op} {limit}", "ok": ok}
    return out


def token_stats(bench: Bench, batch_size: int, single_size: int) -> dict[str, Any]:
    ds = bench.trainer.train_dataset
    out = {}
    for kind in KINDS:
        idx = batch_indices(kind, batch_size, single_size)
        out[kind] = {col: [len(ds[i][col]) for i in idx]
                     for col in ("base_prompt_ids", "std_prompt_ids", "judge_prompt_ids", "response_ids")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--model", default=None, choices=("smollm2", "llama3-8b-shape"),
                        help="default: llama3-8b-shape with CUDA, smollm2 on CPU")
    parser.add_argument("--batch-size", type=int, default=3, help="rows of the mixed batch (2/3 correct)")
    parser.add_argument("--single-size", type=int, default=1, help="rows of the correct and incorrect batches")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--lora-dropout", type=float, default=0.05,
                        help="LoRA dropout (the paper's 0.05; with dropout the trained views' shared prefix runs in "
                             "train mode and the measurement views' once more in eval mode)")
    parser.add_argument("--prompt", default="solve", choices=("solve", "brief", "base"),
                        help="X_base: solve (A.2, five worked examples; default), brief or base")
    parser.add_argument("--long-prompt", action="store_true",
                        help="the long-prompt workload (--prompt solve) with the shared-prefix keys and targets")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "KIND"), help=argparse.SUPPRESS)
    parser.add_argument("--mem-limit-mb", type=int, help=argparse.SUPPRESS)  # a --child's address-space limit
    args = parser.parse_args(argv)
    if args.long_prompt and args.prompt != "solve":
        parser.error("--long-prompt is the solve prompt's workload")

    import torch

    cuda = torch.cuda.is_available()
    args.model = args.model or ("llama3-8b-shape" if cuda else "smollm2")
    if args.model == "llama3-8b-shape" and not cuda:
        parser.error("--model llama3-8b-shape needs a CUDA device")
    if args.child:
        print(json.dumps(guarded_child_memory(args)))
        return 0
    torch.set_num_threads(args.threads)

    from tqdm import tqdm

    tokenizer, model, records = build_shared(args)
    with tempfile.TemporaryDirectory() as out:
        probed = probe_fits(args, "refstyle", args.kinds) if "refstyle" in args.configs and not cuda else {}
        skip = {key for key, result in probed.items() if "error" in result}
        benches = {c: Bench(c, model, tokenizer, records, args.batch_size, args.single_size, out, cuda, args.prompt)
                   for c in args.configs}
        times: dict[tuple[str, str], list[float]] = {(c, k): [] for c in args.configs for k in args.kinds}
        memory: dict[tuple[str, str], dict] = {}
        rounds = args.warmup + args.reps
        progress = tqdm(total=rounds * len(args.configs) * len(args.kinds), desc="steps", file=sys.stderr)
        for rnd in range(rounds):
            for kind in args.kinds:
                # Rotate the order every round so that no configuration always runs first.
                shift = rnd % len(args.configs)
                for config in args.configs[shift:] + args.configs[:shift]:
                    if (config, kind) in skip:
                        progress.update()
                        continue
                    seconds = benches[config].step(kind)
                    if rnd >= args.warmup:
                        times[(config, kind)].append(seconds)
                    progress.update()
        progress.close()
        if not args.no_memory and cuda:
            for config in args.configs:
                for kind in args.kinds:
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                    benches[config].step(kind)
                    peak = torch.cuda.max_memory_allocated()
                    memory[(config, kind)] = {"peak_mb": peak / 2**20, "step_mb": (peak - before) / 2**20}
        meta = {
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "model": args.model, "dtype": "bfloat16" if cuda else "float32", "lora": "r16 alpha16 MLP",
            "batch_size": args.batch_size, "single_size": args.single_size, "threads": args.threads,
            "warmup": args.warmup, "reps": args.reps,
            "gradient_checkpointing": args.gradient_checkpointing, "prompt": args.prompt,
            "shared_prefix_tokens": {c: len(b.batches[args.kinds[0]][0].get("prefix_ids", ()))
                                     for c, b in benches.items() if c != "trl_sft"},
            "memory_method": "torch.cuda.max_memory_allocated" if cuda else "VmHWM of a fresh child process",
            "torch": torch.__version__,
            # An NLFT configuration tokenizes every view; the SFT ones only the base prompt.
            "tokens": next((token_stats(benches[c], args.batch_size, args.single_size) for c in args.configs
                            if c.startswith("nlft")), None),
            "cache_fill_s": benches["nlft_cached"].cache_fill_s if "nlft_cached" in benches else None,
        }
        del benches
    if not args.no_memory and not cuda:
        memory = cpu_memory(args, args.configs, args.kinds, known=probed)
    else:
        memory.update(probed)
    report = summarise(times, memory, args, meta)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    for name, t in report["targets"].items():
        print(f"{name:24s} {t['ratio']:28s} {t['value'] if t['value'] is None else round(t['value'], 3)!s:>7} "
              f"{t['limit']:>7}  {'ok' if t['ok'] else 'MISS' if t['ok'] is not None else '-'}")
    for kind in args.kinds:
        steps = {c: report["per_kind"][kind][c]["step_s"] for c in args.configs}
        cells = "  ".join(f"{c}={'did not fit' if t is None else f'{t:.3f}s'}" for c, t in steps.items())
        print(f"{kind:9s} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
