"""The sandbox runs real programs in real processes: limits, early exits, environment, files, descriptors."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from nlft.tasks.sandbox import RunResult, run_many, run_python

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop to nobody needs root")


def run(source: str, **kwargs) -> RunResult:
    # Generous for programs that should pass (a loaded machine starts Python slowly); the timeout tests set 1 s.
    return run_python(source, **{"timeout_s": 15.0, **kwargs})


def test_a_passing_program_and_its_output() -> None:
    result = run("def f(x):\n    return x + 1\n\nassert f(1) == 2\nprint('done')\n")
    assert result.passed and result.kind == "passed" and result.reason == "passed"
    assert result.returncode == 0
    assert result.stdout.strip() == "done"  # the sentinel is taken out
    assert "NLFT-SANDBOX" not in result.stdout
    assert 0 < result.duration_s < 15


def test_a_failing_assert_is_named_with_its_line() -> None:
    result = run("def f(x):\n    return x\n\nassert f(1) == 1\nassert f(2) == 3, 'two'\n")
    assert not result.passed and result.kind == "exception"
    assert result.error == "AssertionError: two"
    assert result.lineno == 5 and result.line == "assert f(2) == 3, 'two'"
    assert result.reason == "AssertionError: two (line 5: assert f(2) == 3, 'two')"


def test_a_traceback_gives_its_last_line_and_frames() -> None:
    result = run("def g(xs):\n    return xs[3]\n\ndef check():\n    g([1])\n\ncheck()\n")
    assert result.error == "IndexError: list index out of range"
    assert result.frames == [7, 5, 2] and result.line == "return xs[3]"
    syntax = run("def f(:\n    pass\n")
    assert syntax.kind == "exception" and syntax.error.startswith("SyntaxError")


def test_an_endless_loop_is_stopped_at_the_timeout() -> None:
    started = time.monotonic()
    result = run("while True:\n    pass\n", timeout_s=1.0)
    assert not result.passed and result.kind == "timeout"
    assert result.reason == "timeout after 1 s"
    assert time.monotonic() - started < 5


def test_a_sleeping_child_process_is_killed_with_the_group() -> None:
    result = run("import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                 "import time\ntime.sleep(60)\n", timeout_s=1.0)
    assert result.kind == "timeout" and result.duration_s < 4


def test_a_huge_allocation_hits_the_memory_limit() -> None:
    result = run("x = bytearray(10 * 2**30)\n", memory_mb=512)
    assert not result.passed and result.kind == "memory"
    assert result.reason.startswith("memory limit (512 MB): MemoryError")


def test_cpu_limit() -> None:
    result = run("while True:\n    pass\n", timeout_s=20.0, cpu_s=1)
    assert not result.passed and result.kind == "cpu" and result.reason == "CPU time limit (1 s)"


def test_output_is_bounded_by_the_file_size_limit() -> None:
    result = run("import sys\nsys.stdout.write('x' * (3 * 2**20))\n", file_mb=1)
    assert not result.passed and result.kind == "output"
    assert len(result.stdout) < 3000


@pytest.mark.parametrize("exit_code", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"])
def test_exiting_before_the_end_is_a_failure(exit_code: str) -> None:
    result = run(f"def f():\n    return 1\n\n{exit_code}\nassert f() == 2\n")
    assert not result.passed and result.kind == "early-exit" and result.returncode == 0
    assert "did not all run" in result.reason


def test_the_exit_code_is_reported() -> None:
    result = run("import sys\nsys.exit(3)\n")
    assert not result.passed and result.kind == "exit" and result.reason == "exit code 3"


def test_rebinding_print_or_stdout_does_not_lose_the_sentinel() -> None:
    assert run("import io, sys\nsys.stdout = io.StringIO()\nprint = None\n").passed


def test_no_secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    result = run("import os\nprint(sorted(os.environ))\nprint(os.environ['HOME'] == os.getcwd())\n"
                 "assert 'SECRET' not in os.environ and 'OPENAI_API_KEY' not in os.environ\n")
    assert result.passed, result.reason
    assert "hunter2" not in result.stdout and "sk-fake" not in result.stdout
    assert "True" in result.stdout


def test_parent_file_descriptors_are_not_inherited(tmp_path: Path) -> None:
    handle = open(tmp_path / "parent.txt", "w")  # noqa: SIM115 - held open on purpose
    try:
        os.set_inheritable(handle.fileno(), True)
        result = run(f"import os\nos.fstat({handle.fileno()})\n")
        assert not result.passed and result.error.startswith("OSError: [Errno 9] Bad file descriptor")
        listing = run("import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))\n")
        assert listing.stdout.strip() == "[0, 1, 2, 3]"  # stdin, stdout, stderr and the listing itself
        assert run("import sys\nassert sys.stdin.read() == ''\n").passed  # stdin is /dev/null
    finally:
        handle.close()


def test_the_temporary_folder_is_private_and_removed() -> None:
    result = run("import os, stat\nprint(os.getcwd())\nopen('scratch.txt', 'w').write('x')\n"
                 "assert stat.S_IMODE(os.stat('.').st_mode) == 0o700\n"
                 "assert os.environ['TMPDIR'] == os.getcwd()\n")
    assert result.passed, result.reason
    folder = Path(result.stdout.strip())
    assert folder.name.startswith("nlft-sandbox-") and not folder.exists()


@needs_root
def test_as_root_each_program_runs_as_an_unprivileged_uid_of_its_own() -> None:
    source = "import os\nprint(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())\n"
    first, second = run(source), run(source)
    assert first.passed and second.passed, (first.reason, second.reason)
    uid, euid, gid, groups = first.stdout.strip().split(maxsplit=3)
    assert uid == euid == gid and int(uid) != 0 and groups == "[]"
    assert second.stdout.split()[0] != uid or uid == "65534"  # fresh per run (nobody where uids are not mapped)


@needs_root
def test_processes_that_leave_the_group_and_files_left_in_tmp_are_removed() -> None:
    name = Path(tempfile.gettempdir()) / f"nlft-sandbox-test-{os.getpid()}-{time.monotonic_ns()}"
    source = ("import os, subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
              "                         start_new_session=True)\n"
              f"open({str(name)!r}, 'w').write('left behind')\n"
              "print(os.getuid(), child.pid)\n")
    result = run(source)
    assert result.passed, result.reason
    if int(result.stdout.split()[0]) == 65534:
        pytest.skip("per-run uids are not mapped here: programs run as nobody")
    pid = int(result.stdout.split()[1])
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z")  # killed (a zombie until its new parent reaps it)
    assert not name.exists()


@pytest.fixture
def reachable_tmp_path(tmp_path: Path):
    """``tmp_path`` that other users may enter (o+x on it and its folders up to the temp dir), restored after."""
    top = Path(tempfile.gettempdir()).resolve()
    path = tmp_path.resolve()
    if top not in path.parents:
        pytest.skip(f"tmp_path {path} is not under {top}")
    chain = [path, *[p for p in path.parents if top in p.parents]]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in chain}
    try:
        for p, mode in modes.items():
            p.chmod(mode | stat.S_IXOTH)
        yield path
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


@needs_root
def test_files_outside_the_folder_survive(reachable_tmp_path: Path) -> None:
    # Only files this test creates are targeted. The victim is writable by its owner (root) only, in a
    # folder anyone can enter: only the privilege drop protects it.
    folder = reachable_tmp_path / "victims"
    folder.mkdir()
    folder.chmod(0o755)
    victim = folder / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o644)
    assert run(f"print(open({str(victim)!r}).read())\n").stdout.strip() == "keep me"  # it is reachable
    attempts = [f"import os\nos.remove({str(victim)!r})\n",
                f"open({str(victim)!r}, 'w').write('overwritten')\n",
                f"open({str(folder / 'new.txt')!r}, 'w').write('new')\n",
                f"import shutil\nshutil.rmtree({str(folder)!r})\n",
                f"import os\nos.chmod({str(victim)!r}, 0o777)\n"]
    for source in attempts:
        result = run(source)
        assert not result.passed and result.error.startswith("PermissionError"), (source, result.reason)
    assert victim.read_text() == "keep me" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert sorted(p.name for p in folder.iterdir()) == ["victim.txt"]


@needs_root
def test_killing_the_parent_is_refused() -> None:
    result = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    assert not result.passed and result.error.startswith("PermissionError")


@needs_root
def test_the_process_limit_binds_as_nobody() -> None:
    # Bounded: at most 20 short-lived sleepers, all killed with the process group afterwards.
    source = ("import os, time\nstarted = 0\nfor _ in range(20):\n    try:\n        pid = os.fork()\n"
              "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n"
              "    started += 1\nprint(started)\nassert started < 20\n")
    result = run(source, max_processes=8)
    assert result.passed, result.reason
    assert int(result.stdout.strip()) < 8


def test_run_many_keeps_the_order() -> None:
    sources = [f"assert {i} % 2 == 0\n" for i in range(6)]
    results = run_many(sources, workers=2, timeout_s=15.0)
    assert [r.passed for r in results] == [True, False, True, False, True, False]
    assert run_many([]) == []


def test_without_the_privilege_drop_it_runs_as_this_user() -> None:
    result = run("import os\nprint(os.getuid())\n", drop_privileges=False)
    assert result.passed and result.stdout.strip() == str(os.getuid())


def test_an_interpreter_that_does_not_start_is_a_sandbox_error() -> None:
    result = run("pass\n", python="/nonexistent/python3")
    assert not result.passed and result.kind == "error" and result.reason.startswith("sandbox error")
