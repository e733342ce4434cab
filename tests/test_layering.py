"""The flow runs one way: the sw core never imports lowbit.hw or lowbit.sim (lazy imports
inside functions included), hw never imports sim, and sw never imports Amaranth at module
level (``lowbit --help`` and the golden model must not need it). Only the command line
(``sw/commands``) and the explore tasks that build, synthesize and simulate points
(``sw/explore/tasks.py``) may reach into hw and sim.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"sw": "lowbit.sw", "hw": "lowbit.hw", "sim": "lowbit.sim"}
#: sw modules allowed to import hw/sim: they orchestrate the whole flow
ORCHESTRATION = ("lowbit.sw.commands", "lowbit.sw.explore.tasks")


def _module_name(path: Path, root: Path = ROOT) -> str:
    folder = path.relative_to(root).parts[0]
    rel = path.relative_to(root / folder).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGES[folder], *parts])


def _imports(path: Path, root: Path = ROOT):
    """``(imported module, line, at module level)`` for every import in the file, anywhere."""
    tree = ast.parse(path.read_text(), str(path))
    mod = _module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, node.lineno, id(node) in top_level
            for alias in node.names:  # "from lowbit import hw" imports lowbit.hw
                yield f"{name}.{alias.name}", node.lineno, id(node) in top_level


def _files(folder: str, root: Path = ROOT):
    return sorted(p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _violations(folder: str, forbidden: tuple[str, ...], *, allowed=(), top_level_only=False, root: Path = ROOT):
    bad = []
    for path in _files(folder, root):
        mod = _module_name(path, root)
        if any(mod == a or mod.startswith(a + ".") for a in allowed):
            continue
        for name, line, at_top in _imports(path, root):
            if top_level_only and not at_top:
                continue
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


def test_the_module_names_resolve():
    names = {_module_name(p) for p in _files("sw")}
    assert {"lowbit.sw.ops", "lowbit.sw.ops.matvec", "lowbit.sw.golden", "lowbit.sw.commands.build"} <= names
    # relative imports resolve to real modules (a wrong resolution would hide violations)
    resolved = {name for p in _files("sw") for name, _, _ in _imports(p) if name.startswith("lowbit.")}
    assert "lowbit.sw.ir" in resolved and "lowbit.sw.formats" in resolved


def test_sw_core_never_imports_hw_or_sim():
    assert _violations("sw", ("lowbit.hw", "lowbit.sim"), allowed=ORCHESTRATION) == []


def test_hw_never_imports_sim():
    assert _violations("hw", ("lowbit.sim",)) == []


def test_sw_never_imports_amaranth_at_module_level():
    assert _violations("sw", ("amaranth",), top_level_only=True) == []


@pytest.mark.parametrize("forbidden", ["lowbit.hw.mac", "lowbit.sim.netrun"])
def test_a_lazy_import_is_caught(tmp_path, forbidden):
    """The checker sees imports inside functions, relative ones too, not only at the top."""
    (tmp_path / "sw" / "quant").mkdir(parents=True)
    (tmp_path / "sw" / "quant" / "probe.py").write_text(
        f"import numpy\n\ndef f():\n    import {forbidden}\n\ndef g():\n    from ...hw import registry\n\n"
        f"def h():\n    from lowbit import sim\n")
    (tmp_path / "sw" / "commands").mkdir()
    (tmp_path / "sw" / "commands" / "ok.py").write_text(f"import {forbidden}\n")  # orchestration may
    assert _violations("sw", ("lowbit.hw", "lowbit.sim"), allowed=ORCHESTRATION, root=tmp_path) == [
        f"sw/quant/probe.py:4 imports {forbidden}", "sw/quant/probe.py:7 imports lowbit.hw",
        "sw/quant/probe.py:7 imports lowbit.hw.registry", "sw/quant/probe.py:10 imports lowbit.sim"]


def test_every_package_is_installed():
    """A non-editable install takes only the packages pyproject.toml lists: every folder with an
    ``__init__.py`` must be among them (a missing one works in the editable tree and breaks a wheel)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"lowbit"} | {_module_name(p) for folder in PACKAGES for p in _files(folder) if p.name == "__init__.py"}
    assert found - listed == set()
