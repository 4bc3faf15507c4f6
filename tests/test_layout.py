"""The layout DESIGN.md promises: small files, imports that only flow downwards, no circles."""

import ast
from pathlib import Path

import rnnlab

SRC = Path(rnnlab.__file__).parent
# DESIGN.md: cells ← engine ← stack ← layers ← models ← train ← runs ← studies ← report ← cli;
# the explorer (stepwise ← explorer ← its command) reads runs and is linked by reports
ORDER = ["cells", "engine", "stack", "layers", "models", "train", "runs", "stepwise", "explorer",
         "studies", "report", "cli_explore", "cli_study", "cli"]
MAX_LINES = 500


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in SRC.rglob("*.py")}


def _imports(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """Every rnnlab module ``name`` imports, at module level or inside functions."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import x` imports the submodule x
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path.read_text(encoding="utf-8"), path.name == "__init__.py",
                           set(mods)) for name, path in mods.items()}


def test_no_source_file_is_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError(" -> ".join([*stack, m, n]))
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_imports_flow_downwards():
    rank = {f"rnnlab.{m}": i for i, m in enumerate(ORDER)}

    def rank_of(m):  # a study file ranks as rnnlab.studies
        return next((r for name, r in rank.items() if m == name or m.startswith(name + ".")),
                    None)

    upward = [(a, b) for a, bs in _graph().items() for b in bs
              if rank_of(a) is not None and rank_of(b) is not None and rank_of(b) > rank_of(a)]
    assert not upward


def test_the_checker_sees_imports_inside_functions():
    src = "def f():\n    from ..train import fit\n    from .. import report\n"
    known = {"rnnlab.train", "rnnlab.report", "rnnlab.studies"}
    assert _imports("rnnlab.studies.x", src, False, known) == {"rnnlab.train", "rnnlab.report"}
