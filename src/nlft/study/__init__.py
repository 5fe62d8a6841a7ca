"""The small-data study (``docs/study.md``): NLFT against SFT, DFT and SDFT on a main task and a panel of tasks, with
equal training budgets, seeds that redraw the training data, checkpoints kept on validation questions and
paired tests on held-out ones; and the selection of the default NLFT preset on validation questions.

``config`` (the protocol), ``data`` (questions, outputs and draws per task), ``cells`` (running cells),
``stats`` (the paired test and Holm's adjustment), ``report`` (tables, comparisons, selection, plots).
"""

from nlft.study.cells import run_base, run_cell, run_study
from nlft.study.config import ARMS, CANDIDATES, LABELS, StudyConfig, arm_of, budget, protocol_sha, slug
from nlft.study.report import collect, markdown, select_default, write_report

__all__ = ["ARMS", "CANDIDATES", "LABELS", "StudyConfig", "arm_of", "budget", "collect", "markdown",
           "protocol_sha", "run_base", "run_cell", "run_study", "select_default", "slug", "write_report"]
