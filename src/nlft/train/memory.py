"""Peak memory over a stretch of training: the GPU's allocated memory, or the process's resident set size.

On a GPU the peak is ``torch.cuda.max_memory_allocated`` (reset at every start); on a CPU the
resident set size is sampled in a background thread, so that each epoch gets its own peak.
"""

from __future__ import annotations

import sys
import threading


def current_rss_bytes() -> int:
    """Resident set size of this process now (psutil), or its lifetime peak when psutil is missing."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakMemory:
    """Peak memory over a stretch of time: GPU allocated memory on CUDA, process RSS otherwise.

    Use as ``m.start()`` ... ``m.stop() -> (kind, peak_bytes)``. The CPU peak is sampled every
    ``interval`` seconds by a daemon thread (plus once at start and stop).
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def kind() -> str:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu_rss"

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, current_rss_bytes())

    def start(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return
        self._peak = current_rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> tuple[str, int]:
        import torch

        if torch.cuda.is_available():
            return "gpu", int(max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())))
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._peak = max(self._peak, current_rss_bytes())
        return "cpu_rss", self._peak
