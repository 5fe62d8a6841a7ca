"""Run one untrusted Python program (code and its tests) in a fresh, limited process.

:func:`run_python` writes the program into a private temporary folder and runs it with ``python -I
-S``, detached by ``setsid`` into a process group of its own: a wall-clock limit (the whole group
is killed), CPU time, address
space, file size, process count and core dump limits, an environment built from scratch (``PATH``,
``LANG``, ``HOME`` and ``TMPDIR`` in the folder; nothing inherited, so no secrets), no inherited
file descriptors, stdin from ``/dev/null``. As root it runs as an unprivileged uid of its own (fresh
for each run; ``nobody`` where that range is not mapped), which owns only the temporary folder:
writes anywhere else but world-writable folders fail, and the process limit binds. Afterwards every
process of that uid is killed and what it left at the top of ``/tmp`` is removed.

A program passes when it exits with status 0 *and* prints the per-run sentinel appended after its
last line: ``sys.exit(0)`` or ``os._exit(0)`` before the tests have all run is a failure.

This stops accidents (endless loops, runaway memory, stray writes, early exits), not hostile code:
the network is open, the program can read what any user can read, and it can read its own file
(and so the sentinel). Run code you do not trust in a container (docs/tasks-code.md).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRAM_NAME = "program.py"
UNPRIVILEGED_USER = "nobody"
# As root each run gets a uid of its own from this range (no passwd entry): its processes can all be
# found and killed afterwards, what it left in /tmp removed, the process limit counts only its own,
# and two programs running at once cannot touch each other's folders. Where the range is not mapped
# (a user namespace), programs run as nobody.
_RUN_UID_BASE = 1_700_000_000
_RUN_UID_SPAN = 100_000_000
TAIL_CHARS = 2000
# Sets the limits in the child, then replaces itself with the program's interpreter: no preexec_fn
# (unsafe with threads, and run_many uses threads). argv: cpu_s, memory bytes, file bytes, nproc, python, program.
_LAUNCHER = (
    "import os, resource as r, sys\n"
    "cpu, mem, fsize, nproc = (int(a) for a in sys.argv[1:5])\n"
    "r.setrlimit(r.RLIMIT_CORE, (0, 0))\n"
    "r.setrlimit(r.RLIMIT_CPU, (cpu, cpu + 1))\n"
    "r.setrlimit(r.RLIMIT_AS, (mem, mem))\n"
    "r.setrlimit(r.RLIMIT_FSIZE, (fsize, fsize))\n"
    "if nproc > 0: r.setrlimit(r.RLIMIT_NPROC, (nproc, nproc))\n"
    "os.execv(sys.argv[5], [sys.argv[5], '-I', '-S', sys.argv[6]])\n"
)
_FRAME_RE = re.compile(r'File "([^"]*)", line (\d+)')
_EXCEPTION_RE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration)\w*)(?::\s?(.*))?$")


@dataclass
class RunResult:
    """How one program ran.

    ``kind`` is one of ``passed``, ``timeout``, ``memory``, ``cpu``, ``output``, ``exception``,
    ``exit`` (non-zero status without a traceback), ``signal`` (killed), ``early-exit`` (status 0
    without the sentinel: the tests did not all run) and ``error`` (the sandbox could not start it).
    ``reason`` says it in words ("passed", "timeout after 10 s", "memory limit (1024 MB): MemoryError",
    "exit code 3", "AssertionError (line 12: assert f(1) == 2)"). ``frames`` are the line numbers of the
    program's own frames in the traceback, outermost first; ``line`` / ``lineno`` the innermost.
    """

    passed: bool
    reason: str
    kind: str
    returncode: int | None = None
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    lineno: int | None = None
    line: str | None = None
    frames: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the result."""
        return dict(self.__dict__)


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _unprivileged_ids() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


@functools.lru_cache(maxsize=1)
def _run_uids_mapped() -> bool:
    """Whether the whole range of per-run uids exists in this user namespace (``/proc/self/uid_map``)."""
    for table in ("/proc/self/uid_map", "/proc/self/gid_map"):
        try:
            ranges = [tuple(int(x) for x in line.split()) for line in Path(table).read_text().splitlines()]
        except (OSError, ValueError):
            return False
        end = _RUN_UID_BASE + _RUN_UID_SPAN
        if not any(len(r) == 3 and r[0] <= _RUN_UID_BASE and end <= r[0] + r[2] for r in ranges):
            return False
    return True


def _process_uids() -> dict[int, set[int]]:
    """The real and effective uids of every process (``/proc``), by pid."""
    found: dict[int, set[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        found[int(entry.name)] = {int(x) for x in line.split()[1:3]}
                        break
        except (OSError, ValueError):
            continue
    return found


def _run_ids() -> tuple[int, int, bool]:
    """``(uid, gid, own)``: a fresh uid of this run's own (no passwd entry, no process), or nobody's (own false)."""
    import grp
    import pwd

    if _run_uids_mapped():
        in_use = set().union(*_process_uids().values())
        for _ in range(16):
            uid = _RUN_UID_BASE + secrets.randbelow(_RUN_UID_SPAN)
            if uid in in_use:
                continue
            try:
                pwd.getpwuid(uid)
                continue
            except KeyError:
                pass
            try:
                grp.getgrgid(uid)
                continue
            except KeyError:
                return uid, uid, True
    uid, gid = _unprivileged_ids()
    return uid, gid, False


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (this run's own uid: its processes only), until none is left."""
    for _ in range(50):
        pids = [pid for pid, uids in _process_uids().items() if uid in uids and _alive(pid)]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _remove_files_of(uid: int) -> list[str]:
    """Remove what ``uid`` left at the top of the world-writable folders (``/tmp``, ``/var/tmp``, ``/dev/shm``).

    Only entries owned by ``uid`` (this run's own uid) are touched; symbolic links are removed, never
    followed. Returns their paths.
    """
    removed = []
    for folder in dict.fromkeys((tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm")):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(entry.path)
            except OSError:
                continue
    return removed


def _minimal_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": home, "TMPDIR": home, "PYTHONDONTWRITEBYTECODE": "1"}


def _probe(python: str, ids: tuple[int, int] | None) -> bool:
    """Whether ``python`` starts in isolated mode as the sandbox's user (it must be able to read it)."""
    kwargs: dict[str, Any] = {}
    if ids is not None:
        kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
    try:
        done = subprocess.run([python, "-I", "-S", "-c", "import os, resource"], cwd="/", env=_minimal_env("/"),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              close_fds=True, timeout=30, check=False, **kwargs)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@functools.lru_cache(maxsize=8)
def sandbox_python(drop_privileges: bool) -> str:
    """The interpreter programs run with: ``$NLFT_SANDBOX_PYTHON``, this one, or a system ``python3``.

    Dropping privileges needs an interpreter the unprivileged user can read (this one may live under
    ``/root``); the first candidate that starts as that user is used. RuntimeError when none does.
    """
    ids = _unprivileged_ids() if drop_privileges else None
    candidates = [os.environ.get("NLFT_SANDBOX_PYTHON"), sys.executable, os.path.realpath(sys.executable),
                  "/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")]
    seen = set()
    for candidate in candidates:
        if not candidate or candidate in seen or not os.path.isfile(candidate):
            continue
        seen.add(candidate)
        if _probe(candidate, ids):
            return candidate
    who = f"the user {UNPRIVILEGED_USER}" if drop_privileges else "this user"
    raise RuntimeError(f"no Python interpreter that {who} can run was found (tried {', '.join(sorted(seen))}); "
                       "set NLFT_SANDBOX_PYTHON to one, e.g. /usr/bin/python3")


def _parse_traceback(stderr: str, program_path: str, source_lines: list[str]) -> tuple[str | None, list[int]]:
    """The exception line of a traceback and the program's own frames (line numbers, outermost first)."""
    frames = [int(n) for path, n in _FRAME_RE.findall(stderr)
              if path == program_path or os.path.basename(path) == PROGRAM_NAME]
    error = None
    for raw in reversed(stderr.strip().splitlines()):
        line = raw.strip()
        if _EXCEPTION_RE.match(line):
            error = line
            break
    frames = [n for n in frames if 1 <= n <= len(source_lines)]
    return error, frames


def _classify(returncode: int, stdout: str, stderr: str, sentinel: str, *, program_path: str, source: str,
              timeout_s: float, memory_mb: int, cpu_s: int, fsize: int, stdout_size: int,
              stderr_size: int) -> RunResult:
    lines = source.splitlines()
    error, frames = _parse_traceback(stderr, program_path, lines)
    lineno = frames[-1] if frames else None
    line = lines[lineno - 1].strip() if lineno else None
    where = f" (line {lineno}: {line})" if lineno and line else ""
    base = {"returncode": returncode, "error": error, "lineno": lineno, "line": line, "frames": frames}
    if returncode == 0 and sentinel in stdout:
        return RunResult(True, "passed", "passed", **base)
    if returncode == -signal.SIGXCPU:
        return RunResult(False, f"CPU time limit ({_seconds(cpu_s)})", "cpu", **base)
    if error and error.split(":")[0].endswith("MemoryError"):
        return RunResult(False, f"memory limit ({memory_mb} MB): {error}{where}", "memory", **base)
    if max(stdout_size, stderr_size) >= fsize or (error and "File too large" in error):
        return RunResult(False, f"output limit ({fsize // 2**20} MB)", "output", **base)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return RunResult(False, f"killed by {name}", "signal", **base)
    if returncode == 0:
        return RunResult(False, "exit code 0 before the end of the program (sys.exit or os._exit): "
                                "the tests did not all run", "early-exit", **base)
    if error and not error.startswith("SystemExit"):
        return RunResult(False, f"{error}{where}", "exception", **base)
    return RunResult(False, f"exit code {returncode}", "exit", **base)


def run_python(source: str, *, timeout_s: float = 10.0, memory_mb: int = 1024, cpu_s: float | None = None,
               file_mb: int = 16, max_processes: int = 64, drop_privileges: bool | None = None,
               python: str | None = None) -> RunResult:
    """Run ``source`` (a whole program: code and tests) in a fresh sandboxed process; how it went.

    Args:
        source: the program; it passes when it exits 0 after running to its last line.
        timeout_s: wall-clock limit; the process group is killed after it ("timeout after 10 s").
        memory_mb: address-space limit (RLIMIT_AS): a bigger allocation raises MemoryError.
        cpu_s: CPU-time limit (RLIMIT_CPU), default the wall-clock limit rounded up, plus one second.
        file_mb: largest file the program may write (RLIMIT_FSIZE), its stdout and stderr included.
        max_processes: RLIMIT_NPROC for the unprivileged user (counts threads; binds only without root).
        drop_privileges: run as an unprivileged uid of its own (default: when running as root). Needs root.
        python: the interpreter (default :func:`sandbox_python`).
    """
    if drop_privileges is None:
        drop_privileges = os.geteuid() == 0
    if drop_privileges and os.geteuid() != 0:
        raise PermissionError("drop_privileges needs root")
    cpu_limit = max(1, int(cpu_s if cpu_s is not None else timeout_s + 0.999) + (0 if cpu_s is not None else 1))
    fsize = file_mb * 2**20
    sentinel = f"NLFT-SANDBOX-DONE-{secrets.token_hex(16)}"
    # The sentinel is written straight to fd 1 after the buffered output, so a program that rebinds
    # print or sys.stdout still ends with it.
    program = (source.rstrip("\n") + "\n\n\nimport os as _nlft_os, sys as _nlft_sys\n"
               "_nlft_sys.stdout.flush()\n"
               f"_nlft_os.write(1, b'\\n{sentinel}\\n')\n")
    started = time.monotonic()
    try:
        interpreter = python or sandbox_python(drop_privileges)
    except RuntimeError as err:
        return RunResult(False, f"sandbox error: {err}", "error")
    folder = tempfile.mkdtemp(prefix="nlft-sandbox-")
    own_uid = False
    proc: subprocess.Popen[bytes] | None = None
    try:
        program_path = os.path.join(folder, PROGRAM_NAME)
        Path(program_path).write_text(program, encoding="utf-8")
        kwargs: dict[str, Any] = {}
        if drop_privileges:
            uid, gid, own_uid = _run_ids()
            os.chown(folder, uid, gid)
            os.chown(program_path, uid, gid)
            kwargs = {"user": uid, "group": gid, "extra_groups": []}
        # stdout/stderr go to files the parent opened (not pipes): RLIMIT_FSIZE bounds them, and the
        # parent never holds more than the tails in memory.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            argv = [interpreter, "-I", "-S", "-c", _LAUNCHER, str(cpu_limit), str(memory_mb * 2**20), str(fsize),
                    str(max_processes if drop_privileges else 0), interpreter, program_path]
            try:
                proc = subprocess.Popen(argv, cwd=folder, env=_minimal_env(folder), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, close_fds=True, start_new_session=True,
                                        umask=0o077, **kwargs)
            except OSError as error:
                return RunResult(False, f"sandbox error: {error}", "error")
            timed_out = False
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            # whatever the program left behind in its process group goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if timed_out:
                returncode = proc.wait()
            duration = time.monotonic() - started
            sizes = (os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size)
            stdout, stderr = (_read_tail(f) for f in (out, err))
        if timed_out:
            result = RunResult(False, f"timeout after {_seconds(timeout_s)}", "timeout", returncode=returncode)
        else:
            result = _classify(returncode, stdout, stderr, sentinel, program_path=program_path, source=program,
                               timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_limit, fsize=fsize,
                               stdout_size=sizes[0], stderr_size=sizes[1])
        result.duration_s = round(duration, 4)
        result.stdout = _tail(stdout.replace(f"\n{sentinel}\n", "").replace(sentinel, ""))
        result.stderr = _tail(stderr)
        return result
    finally:
        if proc is not None and proc.returncode is None:  # interrupted (KeyboardInterrupt in wait)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if own_uid:  # processes that left the group (through setsid) and files left in /tmp go too
            _kill_uid(uid)
            _remove_files_of(uid)
        shutil.rmtree(folder, ignore_errors=True)


def _read_tail(handle: Any, limit: int = 64 * 1024) -> str:
    """The last ``limit`` bytes of an output file, decoded."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - limit))
    return handle.read().decode("utf-8", errors="replace")


def run_many(sources: Sequence[str], *, workers: int = 2, **kwargs: Any) -> list[RunResult]:
    """:func:`run_python` for several programs, ``workers`` at a time; results in the order of ``sources``."""
    if not sources:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sources)))) as pool:
        return list(pool.map(lambda src: run_python(src, **kwargs), sources))
