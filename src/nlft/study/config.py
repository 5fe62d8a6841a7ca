"""The study's protocol: :class:`StudyConfig`, its arms, the NLFT candidates of the preset selection, the budget.

Standard library only (``nlft study --help`` builds its flags from here).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


class Arm(NamedTuple):
    """One trained arm: the ``nlft train`` method, its SFT targets, its NLFT preset and settings on top of it,
    whether it trains on the correct outputs only, and whether it trains NLFT's weights exported once with the
    initial model (``nlft weights``, then ``nlft train --from-weights``: TRL's SFTTrainer) rather than measured
    as it trains."""

    method: str
    sft_data: str | None = None
    preset: str | None = None
    settings: dict[str, Any] = {}  # noqa: RUF012 (a NamedTuple default, never mutated)
    correct_only: bool = False
    static_weights: bool = False


# Every arm the study knows. "nlft" is the published method; "nlft_robust" the robust preset as
# nlft.train.config.PRESETS defines it today (chosen on validation questions: docs/method.md, "Defaults
# across tasks"); "nlft_correct_only" the default preset on the correct outputs alone (what the incorrect
# outputs and their judgments add); "nlft_robust_weights" the robust preset's weights exported once with the
# initial model and trained with TRL's SFTTrainer (what measuring the views as the model trains adds).
ARMS: dict[str, Arm] = {
    "sft_gold": Arm("sft", "reference"),
    "sft_outputs": Arm("sft", "outputs"),
    "dft": Arm("dft", "outputs"),
    "nlft": Arm("nlft", preset="paper"),
    "nlft_robust": Arm("nlft", preset="robust"),
    "nlft_robust_weights": Arm("nlft", preset="robust", static_weights=True),
    "nlft_correct_only": Arm("nlft", preset="default", correct_only=True),
    "sdft": Arm("sdft"),
    "cut": Arm("cut"),
}
LABELS = {"base": "base model", "sft_gold": "SFT, gold answers", "sft_outputs": "SFT, same outputs",
          "dft": "DFT, same outputs", "nlft": "NLFT (paper)", "nlft_robust": "NLFT (robust)",
          "nlft_robust_weights": "NLFT (robust), exported weights",
          "nlft_correct_only": "NLFT, correct outputs only", "sdft": "SDFT (TRL)", "cut": "CUT"}

# Candidate NLFT settings of the preset selection (``nlft study --select``): each is trained on every
# task of the study at N = select_size with the select seeds and scored on validation questions only.
# The criterion, fixed before any of them ran, is in select_default (nlft.study.cells).
# Two causes, crossed, so that each is tested alone: the phrase (paper -> paper_word and robust -> robust_word make a
# phrase the token's word rather than every neighbour with hidden-state cosine >= 0.6, about half of a short output)
# and the target on incorrect outputs (paper -> robust gives their unflagged tokens a likelihood target and reads the
# error ratio against the initial model).
CANDIDATES: dict[str, dict[str, Any]] = {
    "paper": {"preset": "paper"},
    "paper_word": {"preset": "paper", "phrase_rule": "word"},
    "robust": {"preset": "paper", "irrelevant_incorrect": "likelihood", "error_reference": "initial"},
    "robust_word": {"preset": "paper", "irrelevant_incorrect": "likelihood", "error_reference": "initial",
                    "phrase_rule": "word"},
    # The paper's loss (nothing learnt from the unflagged tokens of a wrong output) with the two causes of the falls
    # removed: errors flagged against the initial model (no feedback loop) and phrases that are words.
    "initial_word": {"preset": "paper", "error_reference": "initial", "phrase_rule": "word"},
    # The same with the reference code's plain NLL term on correct outputs, so that a correct output teaches at
    # least what SFT on it would.
    "initial_word_nll": {"preset": "paper", "error_reference": "initial", "phrase_rule": "word", "nll_coef": 1.0},
    # initial_word with correct and incorrect outputs carrying half of the loss each: where the judgment flags little
    # (one-letter answers), the few correct outputs are not diluted by incorrect rows that train nothing.
    "initial_word_balance": {"preset": "paper", "error_reference": "initial", "phrase_rule": "word",
                             "class_balance": True},
    # initial_word with a KL anchor to the initial model on the tokens of incorrect outputs that are not trained
    # away: where nearly every output is wrong (basic_arithmetic), unlikelihood on a few flagged tokens must not
    # move the rest of the answer's form.
    "initial_word_kl": {"preset": "paper", "error_reference": "initial", "phrase_rule": "word", "kl_coef": 1.0},
    # initial_word with half the push away from flagged tokens (unlikelihood_weight 0.5).
    "initial_word_half": {"preset": "paper", "error_reference": "initial", "phrase_rule": "word",
                          "unlikelihood_weight": 0.5},
    # initial_word flagging only tokens whose probability the judgment at least triples (r0 3 instead of 1.5): the
    # response's opening word, which every judgment also opens with, is raised about 2.4x by the judgment view.
    "initial_word_r3": {"preset": "paper", "error_reference": "initial", "phrase_rule": "word", "r0": 3.0},
}


def arm_of(name: str) -> Arm:
    """The :class:`Arm` called ``name``: one of :data:`ARMS`, or ``cand:<candidate>`` of :data:`CANDIDATES`."""
    if name.startswith("cand:"):
        settings = dict(CANDIDATES[name.split(":", 1)[1]])
        return Arm("nlft", preset=settings.pop("preset", "paper"), settings=settings)
    if name not in ARMS:
        raise ValueError(f"unknown study arm {name!r}; choose from {', '.join(ARMS)} or cand:NAME "
                         f"({', '.join(CANDIDATES)})")
    return ARMS[name]


@dataclass
class StudyConfig:
    """The study's protocol. Defaults: the CPU study of ``docs/study.md`` (SmolLM2-135M-Instruct).

    Each task draws a pool of ``pool_size`` training questions once (their outputs generated and
    judged once); seed ``s`` of a size-N cell trains on N records drawn from that pool with ``s``, so the
    seeds replicate over data. Validation and held-out questions come from the task's test split, apart
    from the pool and from each other. Every trained arm of a (task, N) gets the same number of
    optimiser steps, :func:`budget`; it is evaluated on the validation questions ``eval_points`` times
    along the way, keeps its best checkpoint, and only that one is scored on the held-out questions.
    """

    model: str = "smollm2"
    prompt: str = "brief"
    main_task: str = "chain_sum:max_terms=3,max_digits=2"
    panel: tuple[str, ...] = ("basic_arithmetic",)
    sizes: tuple[int, ...] = (50, 100)
    panel_size: int = 50
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = ("sft_gold", "sft_outputs", "dft", "nlft", "nlft_robust", "nlft_correct_only", "sdft")
    panel_arms: tuple[str, ...] = ("sft_gold", "sft_outputs", "dft", "nlft", "nlft_robust", "sdft")
    pool_size: int = 600
    eval_size: int = 300
    val_size: int = 100
    epochs: float = 3.0
    lr: float = 2e-4
    batch_size: int = 4
    eval_points: int = 3
    gen_max_new_tokens: int = 64
    eval_max_new_tokens: int = 64
    eval_batch_size: int = 64
    grading: str = "flexible"
    select_size: int = 50
    select_seeds: tuple[int, ...] = (0, 1)
    candidates: tuple[str, ...] = tuple(CANDIDATES)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.epochs, self.lr = float(self.epochs), float(self.lr)
        for name in (*self.arms, *self.panel_arms):
            arm_of(name)
        for name in self.candidates:
            if name not in CANDIDATES:
                raise ValueError(f"unknown candidate {name!r}; choose from {', '.join(CANDIDATES)}")
        if not self.sizes or min(self.sizes) < 1 or self.panel_size < 1:
            raise ValueError(f"sizes must be positive, got {self.sizes} and panel_size {self.panel_size}")
        if self.eval_points < 1:
            raise ValueError(f"eval_points must be at least 1, got {self.eval_points}")
        if self.grading not in ("strict", "flexible"):
            raise ValueError(f"grading must be strict or flexible, got {self.grading!r}")
        if max(*self.sizes, self.select_size, *((self.panel_size,) if self.panel else ())) > self.pool_size:
            raise ValueError(f"pool_size {self.pool_size} is smaller than a training set")

    @property
    def tasks(self) -> tuple[str, ...]:
        """Every task of the study: the main task first, then the panel."""
        return (self.main_task, *(t for t in self.panel if t != self.main_task))

    def sizes_of(self, task: str) -> tuple[int, ...]:
        """The training-set sizes of ``task``'s table."""
        return tuple(self.sizes) if task == self.main_task else (self.panel_size,)

    def arms_of(self, task: str) -> tuple[str, ...]:
        """The arms of ``task``'s table."""
        return tuple(self.arms) if task == self.main_task else tuple(self.panel_arms)


def budget(n: int, cfg: StudyConfig) -> int:
    """Optimiser steps of every arm at size ``n``: those of NLFT, which takes every one of the ``n`` records for
    ``cfg.epochs`` epochs of batches of ``cfg.batch_size`` (39 at N = 50, 75 at N = 100 with 3 epochs of 4)."""
    return math.ceil(n / cfg.batch_size) * math.ceil(cfg.epochs)


def eval_every(n: int, cfg: StudyConfig) -> int:
    """Steps between validation evaluations: ``eval_points`` evenly spaced points, the last at the budget's end."""
    return max(1, budget(n, cfg) // cfg.eval_points)


def slug(task: str) -> str:
    """The folder name of a task spec: ``chain_sum`` for ``chain_sum:max_terms=3,max_digits=2``."""
    head = task.split(":max_", 1)[0] if task.startswith("chain_sum") else task
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", head).strip("_")


def protocol_sha(cfg: StudyConfig) -> str:
    """A digest of the protocol: cells of one study carry it, so cells of another are never mixed in.

    The candidates and the selection settings are left out: adding a candidate does not change the table's
    cells.
    """
    data = {k: v for k, v in asdict(cfg).items() if k not in ("candidates", "select_seeds", "select_size")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]
