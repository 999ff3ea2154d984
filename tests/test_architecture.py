"""The house rules, checked on the source: no import cycles, Hub-portable folders, one method per room.

Imports are read with ``ast`` from every module of the code folders (function-local imports and
``if TYPE_CHECKING:`` blocks included: an import made only for a type hint still ties the two modules
together), resolved to module names, and the graph is searched for cycles. An implicit parent-package
import (importing ``a.b.c`` runs ``a/b/__init__``) is not an edge: Python handles it, and counting it
would make every package that imports its own members cyclic.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"sidrec": "sidrec", "modeling": "sidrec.modeling", "tokenization": "sidrec.tokenization"}
FOLDERS |= {"training": "sidrec.training", "model_cards": "sidrec.model_cards"}
HUB_PORTABLE_ALLOWED = ("torch", "transformers", "safetensors", "huggingface_hub")


def source_modules() -> dict[str, Path]:
    """Module name -> file for every .py file of the code folders."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imported_names(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) for every import that can run."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found = []

    def visit(node):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in imported_names(name, path):
            # `from pkg import a, b`: each name that is a submodule is an edge to it; pkg itself only
            # when some name is not a submodule (a function or class defined in pkg)
            submodules = {f"{target}.{n}" for n in names} & modules.keys()
            if len(submodules) < max(len(names), 1) and target in modules:
                submodules.add(target)
            graph[name].update(submodules - {name})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative depth-first search)."""
    state = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in graph:
        if state[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state[child] == 1:
                return path[path.index(child) :] + [child]
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40  # the walk really saw the package
    assert "sidrec.training.methods.diger" in graph["sidrec.training.methods"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_recipe_schema_and_the_run_loop_import_no_method():
    """Methods plug in through the registry: the schema and the core stages never name one."""
    modules = source_modules()
    core = ["recipe", "registry", "objectives", "pipeline", "tasks", "semantic_id_task"]
    core += [f"stages.{path.stem}" for path in (ROOT / "training" / "stages").glob("*.py") if path.stem != "__init__"]
    for short in core:
        name = f"sidrec.training.{short}"
        for target, names in imported_names(name, modules[name]):
            reached = [target, *(f"{target}.{n}" for n in names)]
            assert not any(m.startswith("sidrec.training.methods") for m in reached), f"{name} imports {target}"


@pytest.mark.parametrize("folder", ["modeling", "tokenization"])
def test_hub_portable_folders_import_only_the_stack_and_their_siblings(folder):
    """``save_pretrained`` copies these files beside the weights: they cannot reach into training/ or sidrec/."""
    package = FOLDERS[folder]
    for name, path in source_modules().items():
        if not name.startswith(package):
            continue
        for target, _ in imported_names(name, path):
            if target.startswith(package + ".") or target == package:
                continue
            top = target.split(".")[0]
            assert top in HUB_PORTABLE_ALLOWED or top in sys.stdlib_module_names, (
                f"{path.relative_to(ROOT)} imports {target}: Hub-portable files import only torch, transformers, "
                "safetensors, huggingface_hub, the standard library and their own folder"
            )


def test_every_method_lives_in_its_own_module_and_registers_its_objectives():
    from sidrec.training import methods
    from sidrec.training.objectives import OBJECTIVES

    assert {module.__name__.rsplit(".", 1)[-1] for module in methods.METHOD_MODULES} == {
        "diger",
        "soda",
        "dmrec",
        "sasrec",
        "letter",
        "etegrec",
    }
    owners = {name: cls.__module__ for name, cls in OBJECTIVES.items()}
    assert owners["sia"] == owners["psa"] == "sidrec.training.methods.etegrec"
    assert owners["quantizer"].startswith("sidrec.training.methods.diger")
    assert owners["soda"] == "sidrec.training.methods.soda"
    assert owners["dmrec"] == "sidrec.training.methods.dmrec"
    assert owners["ce"] == "sidrec.training.objectives"
