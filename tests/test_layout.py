"""The package's boundaries (shared/STYLE.md): one module names the array library, no module
reaches into another's private names, no two modules import each other, and ``import cutedl``
stays light."""
import ast
import os
import subprocess
import sys

import pytest

import cutedl

ROOT = os.path.dirname(cutedl.__file__)


def modules():
    """``{dotted module name: path}`` of every module of the package."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


MODULES = modules()


def imports(name, path):
    """``[(target module, imported name or None, line)]`` for every cutedl import in a module,
    at module level and inside functions alike."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("cutedl"):
                    found.append((a.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{mod}" if mod else base
            if not mod.startswith("cutedl"):
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub in MODULES:
                    found.append((sub, None, node.lineno))
                else:
                    found.append((mod, a.name, node.lineno))
    return found


def test_only_backend_names_numpy():
    offenders = []
    for name, path in MODULES.items():
        if name == "cutedl.backend" or name.startswith("cutedl.datasets."):
            continue  # datasets parse files with NumPy and hand arrays over through backend
        for i, line in enumerate(open(path, encoding="utf-8"), 1):
            s = line.strip()
            if s.startswith(("import numpy", "from numpy", "import cupy", "from cupy")):
                offenders.append(f"{name}:{i}: {s}")
    assert not offenders, "only cutedl/backend.py may import the array library:\n" + "\n".join(offenders)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name, path in MODULES.items():
        for target, attr, line in imports(name, path):
            if attr is not None and attr.startswith("_") and not attr.startswith("__") and target != name:
                offenders.append(f"{name}:{line} imports {target}.{attr}")
        tree = ast.parse(open(path, encoding="utf-8").read())
        aliases = {a.asname or a.name: f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.module or "").startswith("cutedl") for a in n.names}
        aliases.update({a.asname: a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                        if a.name.startswith("cutedl") and a.asname})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and aliases[node.value.id] in MODULES and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offenders.append(f"{name}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles():
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in imports(name, path):
            if target in MODULES and target != name and target != "cutedl":
                graph[name].add(target)
    # a package's __init__ re-exports its modules: those edges point down and are kept
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_import_cutedl_loads_no_plotting_and_no_mpi():
    code = ("import sys, cutedl; bad = [m for m in ('matplotlib', 'mpi4py', 'cupy', 'threadpoolctl') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_merge_scaffolding_comments():
    hits = [f"{n}:{i}" for n, p in MODULES.items() for i, line in enumerate(open(p, encoding="utf-8"), 1)
            if line.lstrip().startswith("# ----") and "issue" in line]
    assert not hits, hits


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_what_it_owns(name):
    doc = ast.get_docstring(ast.parse(open(MODULES[name], encoding="utf-8").read()))
    assert doc and len(doc.split()) >= 6, f"{name} needs a module docstring saying what it owns"
