"""Small, safe file helpers: JSONL read with precise errors, append-only writes, atomic writes."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad input data. The message names the file, the line (1-based) or the row of a JSON array, and the field."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, line: int | None = None,
                 field: str | None = None, row: int | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.message, self.path, self.line, self.field, self.row = message, path, line, field, row


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` for each non-empty line of a JSONL file.

    A line that is not a JSON object raises :class:`DataError` naming the file and line. A last line
    without a newline that does not parse (a write cut short by a crash) is also reported, never
    silently dropped: the caller decides (see :func:`read_jsonl` ``tolerate_torn_tail``).
    """
    with open(path, "rb") as fh:
        for number, raw_bytes in enumerate(fh, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"not valid UTF-8 (byte {err.start + 1} of the line)", path=path,
                                line=number) from None
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON ({err.msg} at column {err.colno})", path=path,
                                line=number) from None
            if not isinstance(row, dict):
                raise DataError(f"expected a JSON object, got {type(row).__name__}", path=path, line=number)
            yield number, row


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> list[dict[str, Any]]:
    """Read a JSONL file into a list of dicts.

    ``tolerate_torn_tail=True`` ignores an unparsable *last* line that has no trailing newline, the
    mark of an append interrupted by a crash (used when resuming our own output files).
    """
    path = Path(path)
    if not path.exists():
        return []
    if tolerate_torn_tail:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            head, _, tail = data.rpartition(b"\n")
            try:
                json.loads(tail)
            except ValueError:  # JSONDecodeError, or UnicodeDecodeError when cut inside a character
                return _parse_lines(head.split(b"\n"), path)
    return [row for _, row in iter_jsonl(path)]


def _parse_lines(lines: list[bytes], path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as err:
            raise DataError(f"malformed JSON ({err})", path=path, line=number) from None
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}", path=path, line=number)
        rows.append(row)
    return rows


def repair_torn_tail(path: str | os.PathLike) -> None:
    """Cut an incomplete last line (no trailing newline, not valid JSON) left by a crash mid-append."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    head, sep, tail = data.rpartition(b"\n")
    try:
        json.loads(tail)
        with open(path, "ab") as fh:  # a complete row missing only its newline
            fh.write(b"\n")
    except ValueError:  # JSONDecodeError, or UnicodeDecodeError when cut inside a character
        with open(path, "r+b") as fh:
            fh.truncate(len(head) + len(sep))


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows to a JSONL file, one line each, flushed and fsynced before returning."""
    with open(path, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str | bytes) -> None:
    """Write a file (``text``, or ``bytes`` as they are) so that readers see either the old or the new content,
    never a partial one.

    The file gets the mode any new file gets (0666 less the umask, as ``open`` gives), not the 0600 of a
    temporary file: colleagues on a shared machine read it as they read the run's other files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text if isinstance(text, bytes) else text.encode("utf-8"))
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the mode a new file gets (0666 less the umask): libraries that write through
    temporary files (safetensors' weights, for one) leave 0600, which colleagues on a shared machine cannot read."""
    mode = 0o666 & ~current_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_gzip(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` gzip-compressed, with no time or file name in its header: the same text gives the
    same bytes on every write (files committed and rebuilt, e.g. the study's)."""
    atomic_write_text(path, gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    """Atomically write a whole JSONL file."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


LOCK_FILE = ".nlft.lock"
_HELD_LOCKS: dict[str, int] = {}  # resolved folder -> open file descriptor holding its lock


def lock_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` and hold an exclusive lock on it for the rest of this process' life.

    The lock is an ``fcntl.flock`` on ``path/.nlft.lock`` (which records the holder's pid), so a
    second process writing into the same run or data folder is refused with a :class:`DataError`
    instead of interleaving its rows with the first one's; the kernel releases it when the process
    ends, however it ends. Locking a folder this process already holds is a no-op. Only the main
    process of a distributed run (``RANK`` 0) locks; the others share its lock. Without ``fcntl``
    (Windows) nothing is locked.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _HELD_LOCKS or int(os.environ.get("RANK", "0") or 0) != 0:
        return folder
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return folder
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        who = f"another nlft process (pid {holder})" if holder.isdigit() else "another nlft process"
        raise DataError(f"{who} is writing into this folder; wait for it to finish or choose another one",
                        path=folder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD_LOCKS[key] = fd
    return folder


def unlock_dir(path: str | os.PathLike) -> None:
    """Release the lock :func:`lock_dir` took on ``path`` (if this process holds it)."""
    fd = _HELD_LOCKS.pop(str(Path(path).resolve()), None)
    if fd is not None:
        os.close(fd)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file of ``option: value`` into a dict (an empty file gives ``{}``); DataError when malformed."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise DataError(f"malformed YAML: {err}", path=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"expected a mapping of option: value, got {type(data).__name__}", path=path)
    return data
