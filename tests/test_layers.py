"""The package's layers: every import points down the data flow (README, "How the code is organised").

utils < tasks, method < data < eval < train < report < study, quickstart < cli, commands < __main__. A module may
import its own package and any lower layer; the method modules import only torch, the standard
library and each other. Imports inside functions count too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nlft"
# layer of each top-level part of nlft; a module may import only from its own part or a lower layer
LAYERS = {
    "utils": 0,
    "tasks": 1, "method": 1,
    "data": 2,
    "eval": 3,
    "train": 4,
    "report": 5, "integrations": 5,
    "study": 6, "quickstart": 6,
    "cli": 7, "commands": 7,
    "__main__": 8,
}
SHELL = ("cli", "commands", "__main__")


def _part(module: str) -> str:
    """``nlft.train.trainer`` -> ``train``; the package root ``nlft`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, path))
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the file, at any depth; ``from nlft.x import y`` gives ``nlft.x.y``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            if node.module == "nlft":
                found += [(node.lineno, f"nlft.{alias.name}") for alias in node.names
                          if (PACKAGE / alias.name).exists() or (PACKAGE / f"{alias.name}.py").exists()]
    return found


MODULES = _modules()


def test_every_part_has_a_layer():
    parts = {_part(name) for name, _ in MODULES} - {""}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize(("name", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_imports_point_down_the_flow(name, path):
    own = _part(name)
    if not own:  # the package root: NLFTConfig and NLFTTrainer, imported lazily
        return
    wrong = []
    for line, target in _imports(path):
        if not target.startswith("nlft.") or _part(target) in ("", own):
            continue
        if LAYERS[_part(target)] >= LAYERS[own]:
            wrong.append(f"line {line}: {target}")
    assert not wrong, f"{name} ({own}, layer {LAYERS[own]}) imports upwards or sideways: {wrong}"


def test_only_the_shell_imports_the_shell():
    wrong = [f"{name} line {line}: {target}" for name, path in MODULES if _part(name) not in SHELL
             for line, target in _imports(path) if _part(target) in SHELL and target.startswith("nlft.")]
    assert not wrong


def test_method_modules_import_only_torch():
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    wrong = []
    for name, path in MODULES:
        if _part(name) != "method":
            continue
        for line, target in _imports(path):
            top = target.split(".")[0]
            if top == "nlft" and _part(target) == "method":
                continue
            if top not in allowed:
                wrong.append(f"{name} line {line}: {target}")
    assert not wrong


def test_command_modules_are_thin():
    long = {path.name: n for path in (PACKAGE / "commands").glob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 150}
    assert not long, f"command modules parse, call the library once and print: {long}"


def test_no_modules_import_each_other_in_a_loop():
    """Within a part too, a module's imports (at any depth) never lead back to it: a layer reads top-down."""
    names = {name for name, _ in MODULES}
    graph = {name: {t if t in names else t.rsplit(".", 1)[0] for _, t in _imports(path) if t.startswith("nlft.")}
             & names - {name} for name, path in MODULES}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    loops = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                loops.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not loops, f"modules that import each other: {loops}"
