"""The layout of the study and report packages: the report imports nothing that runs a study, module-level imports
inside experiments form no cycle, every module stays small, and every name stays importable where it was."""

import ast
import importlib
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

import experiments.report
import experiments.study
import experiments.tuning

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
#: Modules that run a study: the report must read results without them.
RUNNING = ("experiments.study.runner", "experiments.study.cluster", "experiments.study.launch", "dask", "distributed")
#: The most lines a module of the study and report packages (and ``experiments/tuning.py``) may have.
MAX_LINES = 320
#: Where the repository imports names from the study, the report and tuning.
IMPORT_LINE = re.compile(r"^\s*from (experiments\.(?:study|report|tuning)) import \(?([^()]*?)\)?\s*(?:#.*)?$")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """:return: the import statements that run when the module is imported (not those inside functions or classes)"""
    found, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stack.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """:return: the modules of ``modules`` that an import statement of ``module`` imports"""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = ".".join(package[: len(package) - node.level + 1])
        base = f"{anchor}.{base}" if base else anchor
    found = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    named = {alias.name for alias in node.names if f"{base}.{alias.name}" not in modules}
    return found | ({base} if named and base in modules else set())


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """:param root: the folder that holds ``package``
    :param package: a package name
    :return: module -> the modules of the package that its module-level imports import"""
    paths = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set().union(*(_targets(n, name, is_package, modules) for n in _module_level_imports(tree))) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """:param graph: module -> imported modules
    :return: the modules of one import cycle (the first repeated at the end), or None"""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("module", ["experiments.report", "experiments.tuning", "experiments.study.storage"])
def test_reading_results_imports_nothing_that_runs_a_study(module):
    loaded = _loaded_after_import(module)
    assert module in loaded
    assert not [m for m in loaded if m in RUNNING or m.startswith(("dask.", "distributed."))]


def test_importing_the_study_package_imports_none_of_its_modules():
    loaded = _loaded_after_import("experiments.study")
    assert "experiments.study" in loaded
    assert not [m for m in loaded if m.startswith("experiments.study.")]


def test_module_level_imports_inside_experiments_form_no_cycle():
    graph = import_graph(ROOT, "experiments")
    assert {"experiments.study.runner", "experiments.report.write", "experiments.tuning"} <= set(graph)
    assert "experiments.study.storage" in graph["experiments.study.runner"]  # the graph sees package imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    reached, todo = set(), ["experiments.report"]
    while todo:  # everything the report imports, directly or not
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    assert not reached & set(RUNNING)


def test_the_cycle_finder_finds_a_cycle_through_relative_and_package_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.b import x\n")
    (package / "sub" / "a.py").write_text("def f():\n    from pkg.sub import b  # inside a function: not a cycle\n")
    (package / "sub" / "b.py").write_text("from . import c\nx = 1\n")
    (package / "sub" / "c.py").write_text("import pkg.sub.a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.sub.c"} and graph["pkg.sub.a"] == set() and find_cycle(graph) is None
    (package / "sub" / "a.py").write_text("from pkg.sub import b\n")
    cycle = find_cycle(import_graph(tmp_path, "pkg"))
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"pkg.sub.a", "pkg.sub.b", "pkg.sub.c"}


def test_every_module_of_the_study_and_report_packages_is_small():
    paths = [*(EXPERIMENTS / "study").rglob("*.py"), *(EXPERIMENTS / "report").rglob("*.py"), EXPERIMENTS / "tuning.py"]
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in paths}
    assert len(lines) > 10
    assert {path: n for path, n in lines.items() if n > MAX_LINES} == {}


def _public_definitions(module: str) -> set[str]:
    path = Path(importlib.import_module(module).__file__)
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module", list(experiments.study.MODULE_NAMES))
def test_the_study_package_exports_every_public_name_of_its_modules(module):
    full = f"experiments.study.{module}"
    assert set(experiments.study.MODULE_NAMES[module]) == _public_definitions(full)
    for name in experiments.study.MODULE_NAMES[module]:
        assert getattr(experiments.study, name) is getattr(importlib.import_module(full), name)
    assert set(experiments.study.__all__) <= set(dir(experiments.study))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        experiments.study.no_such_name  # noqa: B018


def test_every_name_the_repository_imports_from_the_study_report_and_tuning_exists():
    files = [*ROOT.glob("*.py"), *ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")]
    files += [p for folder in ("experiments", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")]
    imported: dict[str, set[str]] = {}
    for path in files:
        text = path.read_text()
        for match in re.finditer(r"from experiments\.(?:study|report|tuning) import \([^)]*\)", text):  # several lines
            text = text.replace(match.group(0), " ".join(match.group(0).split()))
        for line in text.splitlines():
            if found := IMPORT_LINE.match(line):
                names = (n.split(" as ")[0].strip() for n in found.group(2).split(","))
                imported.setdefault(found.group(1), set()).update(n for n in names if n)
    assert {"StudyOptions", "run_study", "run_remote", "make_study"} <= imported["experiments.study"]
    modules = {name: importlib.import_module(name) for name in imported}
    assert {(m, n) for m, names in imported.items() for n in names if not hasattr(modules[m], n)} == set()
    for module in (experiments.report, experiments.tuning):
        assert all(hasattr(module, name) for name in module.__all__)


def test_workers_receive_run_remote_by_reference_from_one_module():
    import cloudpickle

    from experiments.study.runner import run_remote

    assert experiments.study.run_remote is run_remote and run_remote.__module__ == "experiments.study.runner"
    assert pickle.loads(cloudpickle.dumps(run_remote)) is run_remote
    assert b"experiments.study.runner" in cloudpickle.dumps(run_remote)
