#!/usr/bin/env python3
"""Fail when modules of a Python package import each other in a circle.

    python3 scripts/check_import_cycles.py                 # python/physgrad
    python3 scripts/check_import_cycles.py path/to/package [--verbose]

Every ``.py`` file under the package is parsed (``ast``; nothing is imported)
and every ``import`` / ``from ... import`` statement found anywhere in it counts:
at module level, inside functions, methods, classes, ``try`` blocks and
conditionals. A statement ``from P import n`` depends on the module ``P.n`` when
that is a module of the package, else on ``P``; ``import a.b`` on ``a.b``;
relative imports are resolved against the importing module. Only modules of the
package are nodes; imports of other packages are ignored.

Not counted:

* imports under ``if TYPE_CHECKING:`` (``typing.TYPE_CHECKING``): they never
  run, they only name types for annotations;
* the implicit import of a parent package that Python performs before a
  submodule (``import physgrad.data.heat`` runs ``physgrad/__init__.py``):
  every submodule would otherwise depend on its package;
* ``importlib.import_module(...)`` and ``__import__`` calls (not statements;
  the experiment registry discovers its modules this way).

A cycle is a strongly connected component of two or more modules; the script
prints each with one circular chain of imports (``file:line`` of every link) and
exits with 1, or prints nothing but a summary and exits with 0.
"""
import argparse
import ast
import os
import sys
from typing import Dict, Iterator, List, Optional, Set, Tuple

#: an import: (importing module, imported module, file, line)
Edge = Tuple[str, str, str, int]

DEFAULT_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "python", "physgrad")


def package_modules(root: str) -> Dict[str, str]:
    """Module name -> file, for every ``.py`` file of the package at ``root``
    (``<package>/__init__.py`` is the package itself)."""
    root = os.path.abspath(root)
    base = os.path.basename(root)
    modules = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if os.path.isfile(os.path.join(folder, d, "__init__.py")))
        relative = os.path.relpath(folder, root)
        parts = [base] + ([] if relative == "." else relative.split(os.sep))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            stem = name[:-3]
            module = ".".join(parts if stem == "__init__" else parts + [stem])
            modules[module] = os.path.join(folder, name)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_statements(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every import statement of ``tree`` at any depth, except those that only
    run under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the ``else`` branch runs
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_base(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    """The absolute module a ``from`` statement names (``from ..x import y`` -> ``<parent>.x``)."""
    if level == 0:
        return name or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]  # a module's relative imports start from its package
    if level > 1:
        parts = parts[:len(parts) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def _known(name: str, modules: Dict[str, str]) -> Optional[str]:
    """``name`` or its longest prefix that is a module of the package, else None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_edges(modules: Dict[str, str]) -> List[Edge]:
    """The imports between modules of the package (self-imports dropped)."""
    edges: List[Edge] = []
    for module, path in modules.items():
        with open(path, encoding="utf-8") as stream:
            tree = ast.parse(stream.read(), filename=path)
        is_package = os.path.basename(path) == "__init__.py"
        for statement in _import_statements(tree):
            targets: List[str] = []
            if isinstance(statement, ast.Import):
                targets = [alias.name for alias in statement.names]
            else:
                base = _resolve_base(module, is_package, statement.level, statement.module)
                for alias in statement.names:
                    submodule = f"{base}.{alias.name}" if base else alias.name
                    targets.append(submodule if submodule in modules else base)
            for target in targets:
                known = _known(target, modules)
                if known is not None and known != module:
                    edges.append((module, known, path, statement.lineno))
    return edges


def strongly_connected(nodes: List[str], graph: Dict[str, List[str]]) -> List[List[str]]:
    """Tarjan's strongly connected components (iterative), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components: List[List[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def one_cycle(component: List[str], edges: List[Edge]) -> List[Edge]:
    """A circular chain of imports through the first module of ``component``
    (breadth-first, so the shortest one)."""
    members = set(component)
    first_edge: Dict[Tuple[str, str], Edge] = {}
    for edge in edges:
        if edge[0] in members and edge[1] in members:
            first_edge.setdefault((edge[0], edge[1]), edge)
    start = component[0]
    previous: Dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for (source, target), edge in sorted(first_edge.items()):
                if source != node:
                    continue
                if target == start:
                    chain = [edge]
                    while chain[0][0] != start:
                        chain.insert(0, previous[chain[0][0]])
                    return chain
                if target not in previous:
                    previous[target] = edge
                    following.append(target)
        frontier = following
    return []


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", nargs="?", default=DEFAULT_PACKAGE,
                        help="the package folder (default: python/physgrad)")
    parser.add_argument("--verbose", action="store_true", help="list every import found")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.package, "__init__.py")):
        print(f"{args.package}: not a package folder (no __init__.py)", file=sys.stderr)
        return 2
    modules = package_modules(args.package)
    edges = import_edges(modules)
    graph: Dict[str, List[str]] = {}
    for source, target, _, _ in edges:
        graph.setdefault(source, [])
        if target not in graph[source]:
            graph[source].append(target)
    if args.verbose:
        for source, target, path, line in edges:
            print(f"{os.path.relpath(path)}:{line}: {source} -> {target}")
    cycles = [c for c in strongly_connected(sorted(modules), graph) if len(c) > 1]
    for component in cycles:
        print(f"import cycle among {len(component)} modules: {', '.join(component)}")
        for source, target, path, line in one_cycle(component, edges):
            print(f"  {os.path.relpath(path)}:{line}: {source} imports {target}")
    pairs = len({(s, t) for s, t, _, _ in edges})
    print(f"{len(modules)} modules, {pairs} imports between them: "
          + (f"{len(cycles)} cycle(s)" if cycles else "no cycle"),
          file=sys.stderr if cycles else sys.stdout)
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
