"""The layers of docs/design.md, checked on the source: every import between haco's packages points
down (or to a leaf module), and raft_state imports nothing of haco, pysyncobj or aiohttp.

Lazy imports inside functions count too: a layer is about what a module may know, not when it loads it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: package -> the haco packages it may import (besides itself and LEAVES). The picture in docs/design.md.
MAY_IMPORT: dict[str, set[str]] = {
    "raft_state": set(),
    "haco.security": set(),
    "haco.replica": {"raft_state"},
    "haco.results": {"raft_state", "haco.replica"},
    "haco.scheduler": {"raft_state", "haco.replica"},
    "haco.server": {"raft_state", "haco.replica", "haco.results", "haco.scheduler", "haco.security"},
    "haco.client": {"haco.security"},
    "haco.worker": {"haco.security", "haco.client"},
    "haco.cluster": {"haco.client"},
    "haco.bench": {"haco.client", "haco.cluster"},
    "haco.cli": {"haco.client", "haco.cluster", "haco.bench", "haco.security", "haco.worker", "haco.server"},
    "chaos": {"haco.client", "haco.cluster"},
}
#: leaf modules any package may import; they import only raft_state (wire) or nothing of haco
LEAVES = {"haco.errors", "haco.config", "haco.logs", "haco.k8s_env", "haco.wire", "haco.health", "haco"}
#: the only cross-layer edge that is not an import of code: `haco coordinator|worker` start those
#: processes' entry points (haco/cli registers their argument parsers lazily)


def _is_leaf(module: str) -> bool:
    return module == "haco" or any(module == m or module.startswith(m + ".") for m in LEAVES - {"haco"})


def _package(module: str) -> str | None:
    for pkg in sorted(MAY_IMPORT, key=len, reverse=True):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _sources() -> list[Path]:
    return sorted(p for d in ("haco", "raft_state", "chaos") for p in (ROOT / d).rglob("*.py"))


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for path in _sources():
        me = _package(_module_name(path))
        if me is None:  # a leaf module
            continue
        for line, target in _imports(path):
            other = _package(target)
            if other is None or other == me or _is_leaf(target):
                continue
            if other not in MAY_IMPORT[me]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({me}) imports {target} ({other})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_leaf_modules_import_nothing_above_raft_state() -> None:
    wrong = []
    for name in LEAVES - {"haco"}:
        path = ROOT / (name.replace(".", "/") + ".py")
        for line, target in _imports(path):
            if _package(target) not in (None, "raft_state") or target.startswith("haco.") and not _is_leaf(target):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_raft_state_imports_no_haco_pysyncobj_or_aiohttp() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} {t}" for p in sorted((ROOT / "raft_state").rglob("*.py"))
           for line, t in _imports(p) if t.split(".")[0] in {"haco", "pysyncobj", "aiohttp", "asyncio"}]
    assert not bad, bad


def test_haco_top_level_holds_packages_and_a_few_shared_modules() -> None:
    modules = sorted(p.stem for p in (ROOT / "haco").glob("*.py") if p.stem not in {"__init__", "__main__"})
    assert modules == ["config", "errors", "health", "k8s_env", "logs", "wire"], modules


def test_a_worker_machine_loads_neither_the_state_machine_nor_the_server() -> None:
    """The worker agent, the client and the wire module run without raft_state, pysyncobj or DuckDB."""
    import subprocess
    import sys
    code = ("import sys, haco.worker.agent, haco.client, haco.wire; "
            "print(','.join(m for m in ('raft_state', 'pysyncobj', 'duckdb', 'haco.server', 'haco.replica') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"
