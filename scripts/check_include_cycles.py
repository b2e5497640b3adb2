#!/usr/bin/env python3
"""Fail when C sources of a folder call each other, or headers include each other, in a circle.

    python3 scripts/check_include_cycles.py                 # cphys/src, headers also from cphys/include
    python3 scripts/check_include_cycles.py path/to/src [--include DIR ...] [--verbose]

The ``.c`` and ``.h`` files of the folder are read as text (nothing is compiled;
comments, string and character literals are blanked first). Two graphs are built:

* **calls**: source A depends on source B when A uses a function or a global
  variable that B defines without ``static``: a call, a function passed as a
  callback, a variable read or written, anywhere in A (function bodies,
  initializers, A's own macros). A use of a macro or a ``static inline``
  function of a header that A includes (directly or not) counts as a use of
  every name in its body, so ``fluid_slot(...)`` makes A depend on the source
  defining ``fluid_worker``;
* **includes**: file A depends on header B when A has ``#include "B"`` and B is
  in the folder or, by its path there, in an ``--include`` folder (the public
  headers, whose macros such as ``CPhysCheck`` expand as above).

A cycle is a strongly connected component of two or more files (or a header
including itself). The script prints each with one circular chain of links
(``file:line`` and the name behind every link) and exits with 1, or prints a
one-line summary and exits with 0. ``--verbose`` prints the sources by level:
level 0 uses no other source, level k only sources below k.

Not seen: calls through function pointers stored at run time by another file
(the pointer's target is a use in the file that stores it), names built by the
preprocessor from pieces (``a ## b``), code excluded by ``#if``. Seen too much:
names are matched as words, so a local variable or a struct member named like
another source's function counts as a use of it (rename one of them).
"""
import argparse
import os
import re
import sys
from typing import Dict, List, Optional, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FOLDER = os.path.join(ROOT, "cphys", "src")
DEFAULT_INCLUDE = os.path.join(ROOT, "cphys", "include")

IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
TOKEN = re.compile(r"[A-Za-z_]\w*|[{}()\[\];=]")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch typedef union
    unsigned void volatile while _Bool _Thread_local __attribute__""".split())

#: a link of a graph: (from file, to file, line in the from file, the name behind it)
Link = Tuple[str, str, int, str]


def blank_comments_and_literals(text: str) -> str:
    """``text`` with comments and the insides of string and character literals
    replaced by spaces; newlines (and so line numbers) are kept."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j, n - 1)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j]) + text[j])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class SourceFile:
    """What one file defines and uses."""

    def __init__(self, path: str, name: str):
        self.path = path
        self.name = name  # as an #include names it
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read()
        text = blank_comments_and_literals(raw)
        self.includes: List[Tuple[str, int]] = [
            (m.group(1), text.count("\n", 0, m.start()) + 1) for m in INCLUDE.finditer(raw)
            if text[m.start():m.end()].strip().startswith("#")]
        # name -> identifiers of its body: macros and static inline functions (what an includer expands)
        self.expansions: Dict[str, Set[str]] = {}
        self.external: Dict[str, int] = {}  # non-static functions and variables defined here -> line
        self.local: Set[str] = set()  # static functions and variables defined here
        self.uses: Dict[str, int] = {}  # identifier -> first line where it is used
        code = self._take_preprocessor_lines(text)
        self._scan(code)

    def _use(self, name: str, line: int) -> None:
        if name not in KEYWORDS and name not in self.uses:
            self.uses[name] = line

    def _take_preprocessor_lines(self, text: str) -> str:
        """Records the macros' bodies and returns ``text`` with every
        preprocessor line (and its continuations) blanked."""
        lines = text.split("\n")
        k = 0
        while k < len(lines):
            if not lines[k].lstrip().startswith("#"):
                k += 1
                continue
            first = k
            while lines[k].rstrip().endswith("\\") and k + 1 < len(lines):
                k += 1
            directive = " ".join(line.rstrip().rstrip("\\") for line in lines[first:k + 1])
            m = re.match(r"\s*#\s*define\s+([A-Za-z_]\w*)(\([^)]*\))?(.*)", directive)
            if m:
                parameters = set(IDENTIFIER.findall(m.group(2) or ""))
                body = set(IDENTIFIER.findall(m.group(3))) - parameters - KEYWORDS
                self.expansions[m.group(1)] = body
                for name in body:  # a source's own macros are used in that source
                    self._use(name, first + 1)
            for j in range(first, k + 1):
                lines[j] = ""
            k += 1
        return "\n".join(lines)

    def _scan(self, code: str) -> None:
        tokens = [(m.group(0), code.count("\n", 0, m.start()) + 1) for m in TOKEN.finditer(code)]
        depth = 0
        declaration: List[Tuple[str, int]] = []  # tokens at depth 0 since the last ; or }
        in_function = False  # the braces at depth 1 are a function body (not a struct or initializer)
        body_owner: Optional[str] = None
        body: Set[str] = set()
        for token, line in tokens:
            if token == "{":
                if depth == 0:
                    name = self._defined_function(declaration)
                    in_function = name is not None
                    if name:
                        is_static = any(t == "static" for t, _ in declaration)
                        (self.local.add(name) if is_static else self.external.setdefault(name, line))
                        if is_static and any(t == "inline" for t, _ in declaration):
                            body_owner, body = name, set()
                depth += 1
                continue
            if token == "}":
                depth -= 1
                if depth == 0 and in_function:
                    if body_owner:
                        self.expansions[body_owner] = body - {body_owner}
                        body_owner = None
                    declaration, in_function = [], False
                continue
            if depth == 0:
                if token == ";":
                    self._declared_variable(declaration)
                    declaration = []
                else:
                    declaration.append((token, line))
                continue
            if IDENTIFIER.fullmatch(token):
                self._use(token, line)
                if body_owner:
                    body.add(token)

    @staticmethod
    def _defined_function(declaration: List[Tuple[str, int]]) -> Optional[str]:
        """The function a ``{`` at file scope opens the body of, or None
        (a struct, union, enum or initializer)."""
        k = len(declaration) - 1
        while k >= 0 and declaration[k][0] == ")":
            depth, j = 0, k
            while j >= 0:
                depth += declaration[j][0] == ")"
                depth -= declaration[j][0] == "("
                if depth == 0:
                    break
                j -= 1
            if j <= 0 or not IDENTIFIER.fullmatch(declaration[j - 1][0]):
                return None
            name = declaration[j - 1][0]
            if name != "__attribute__":
                return name
            k = j - 2  # `f(...) __attribute__((...)) {`: the name is before the attribute
        return None

    def _declared_variable(self, declaration: List[Tuple[str, int]]) -> None:
        words = [t for t, _ in declaration]
        if not words or "typedef" in words or "extern" in words:
            return
        head = words[:words.index("=")] if "=" in words else words
        if "(" in head:  # a prototype (or a function pointer, not worth telling apart)
            return
        if "[" in head:
            head = head[:head.index("[")]
        if len(head) < 2 or not IDENTIFIER.fullmatch(head[-1]) or head[-1] in KEYWORDS:
            return  # no type and name
        if head[-2] in ("struct", "union", "enum"):
            return  # `struct x;`: a declaration of a type
        name, line = head[-1], declaration[len(head) - 1][1]
        (self.local.add(name) if "static" in words else self.external.setdefault(name, line))
        for token, token_line in declaration[len(head):]:  # identifiers of the initializer
            if IDENTIFIER.fullmatch(token):
                self._use(token, token_line)


def read_files(folder: str, include_folders: List[str]) -> Dict[str, SourceFile]:
    """The folder's .c and .h files by name, and the headers under the include
    folders by their path there (``cphys/error.h``)."""
    files = {name: SourceFile(os.path.join(folder, name), name) for name in sorted(os.listdir(folder))
             if name.endswith((".c", ".h"))}
    for include in include_folders:
        for directory, _, names in sorted(os.walk(include)):
            for name in sorted(names):
                path = os.path.join(directory, name)
                key = os.path.relpath(path, include).replace(os.sep, "/")
                if name.endswith(".h") and key not in files:
                    files[key] = SourceFile(path, key)
    return files


def include_links(files: Dict[str, SourceFile]) -> List[Link]:
    return [(f.name, target, line, target) for f in files.values() for target, line in f.includes
            if target in files]


def included_headers(name: str, files: Dict[str, SourceFile]) -> Set[str]:
    seen, stack = set(), [name]
    while stack:
        for target, _ in files[stack.pop()].includes:
            if target in files and target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def call_links(files: Dict[str, SourceFile]) -> List[Link]:
    definer: Dict[str, str] = {}
    for f in files.values():
        if f.name.endswith(".c"):
            for name in f.external:
                definer.setdefault(name, f.name)
    links = []
    for f in files.values():
        if not f.name.endswith(".c"):
            continue
        expansions: Dict[str, Set[str]] = {}
        for header in included_headers(f.name, files):
            expansions.update(files[header].expansions)
        # uses, with what a macro or inline function of an included header expands to
        uses: Dict[str, Tuple[int, str]] = {name: (line, name) for name, line in f.uses.items()}
        stack = list(uses)
        while stack:
            name = stack.pop()
            if name in f.local or name in f.external:
                continue
            for inner in expansions.get(name, ()):
                if inner not in uses:
                    line, via = uses[name]
                    uses[inner] = (line, f"{via} -> {inner}")
                    stack.append(inner)
        seen: Set[str] = set()
        for name, (line, via) in sorted(uses.items(), key=lambda item: item[1]):
            target = definer.get(name)
            if target and target != f.name and name not in f.local and target not in seen:
                seen.add(target)
                links.append((f.name, target, line, via))
    return links


def strongly_connected(nodes: List[str], links: List[Link]) -> List[List[str]]:
    """Tarjan's components with two or more nodes, or one node linked to itself."""
    successors: Dict[str, List[str]] = {node: [] for node in nodes}
    for a, b, _, _ in links:
        successors.setdefault(a, []).append(b)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in successors.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in successors.get(node, []):
                components.append(sorted(component))

    for node in sorted(successors):
        if node not in index:
            visit(node)
    return components


def one_cycle(component: List[str], links: List[Link]) -> List[Link]:
    """A circular chain of links through the component's first file (shortest, by breadth-first search)."""
    members = set(component)
    start = component[0]
    by_source: Dict[str, List[Link]] = {}
    for link in links:
        if link[0] in members and link[1] in members:
            by_source.setdefault(link[0], []).append(link)
    paths: Dict[str, List[Link]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for link in by_source.get(node, []):
                if link[1] == start:
                    return paths[node] + [link]
                if link[1] not in paths:
                    paths[link[1]] = paths[node] + [link]
                    following.append(link[1])
        frontier = following
    return []


def levels(nodes: List[str], links: List[Link]) -> Dict[str, int]:
    """Longest chain of uses below each file (acyclic graphs only)."""
    successors: Dict[str, Set[str]] = {node: set() for node in nodes}
    for a, b, _, _ in links:
        successors[a].add(b)
    level: Dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in level:
            level[node] = 0
            level[node] = max((depth(nxt) + 1 for nxt in successors[node]), default=0)
        return level[node]

    for node in nodes:
        depth(node)
    return level


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", default=DEFAULT_FOLDER, help="folder of .c and .h files")
    parser.add_argument("--include", action="append", metavar="DIR",
                        help="folder of headers included by path (default with the default folder: cphys/include)")
    parser.add_argument("--verbose", action="store_true", help="also print the sources by level")
    args = parser.parse_args(argv)
    includes_from = args.include if args.include is not None else (
        [DEFAULT_INCLUDE] if args.folder == DEFAULT_FOLDER else [])
    files = read_files(args.folder, includes_from)
    sources = sorted(name for name in files if name.endswith(".c"))
    calls, includes = call_links(files), include_links(files)
    failed = False
    for kind, links, nodes in (("call", calls, sources), ("include", includes, sorted(files))):
        for component in strongly_connected(nodes, links):
            failed = True
            print(f"{kind} cycle among {', '.join(component)}:")
            for a, b, line, via in one_cycle(component, links):
                print(f"  {a}:{line} uses {b} ({via})")
    if failed:
        return 1
    print(f"{args.folder}: {len(sources)} sources, {len(files) - len(sources)} headers, "
          f"{len(calls)} call links, {len(includes)} include links, no cycle")
    if args.verbose:
        level = levels(sources, calls)
        for k in range(max(level.values(), default=-1) + 1):
            names = sorted(name for name in sources if level[name] == k)
            print(f"  level {k}: {' '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
