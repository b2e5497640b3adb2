"""Extension libraries: physics ops written in C/C++ and built out of tree against
the installed physgrad (``find_package(physgrad)``, ``<physgrad/op.h>``; see
docs/adding-an-op.md, "C route", and examples/custom_op)::

    ext = physgrad.load_library("build/libpgexample.so")   # Extension(namespace='pgexample', ...)
    y = torch.ops.pgexample.diffuse(x, grad_mode="physical")
    physgrad.solve_stats("pgexample.diffuse")

Such a library declares its namespace with ``PHYSGRAD_EXTENSION(ns)``, which
embeds the physgrad and torch versions of the headers it was compiled with;
:func:`load_library` reads them from the file and refuses, before loading it, a
library built against another physgrad or torch (an ImportError that says to
rebuild it). The library's ops then get the built-in ops' autograd kernel, modes,
statistics and failure policy, in eager code, TorchScript and C++.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from . import _library, ops

__all__ = ["Extension", "load_library", "loaded_libraries", "resolve_mode", "after_forward"]

# Written by PHYSGRAD_EXTENSION (include/physgrad/op.h).
_MARKER = re.compile(rb"physgrad-extension;namespace=([A-Za-z_][A-Za-z0-9_]*);physgrad=([^;\x00]*);"
                     rb"torch=([^;\x00]*);cxx11_abi=([^;\x00]*);")


@dataclass(frozen=True)
class Extension:
    """A loaded extension library: its op ``namespace`` (``torch.ops.<namespace>``),
    ``path``, the ``physgrad_version`` and ``torch_version`` it was built against,
    and its ``ops`` (names in the namespace, without ``physgrad_abi``)."""
    namespace: str
    path: Path
    physgrad_version: str
    torch_version: str
    ops: Tuple[str, ...]


_loaded: Dict[str, Extension] = {}
_lock = threading.Lock()


def loaded_libraries() -> Tuple[Extension, ...]:
    """The extension libraries :func:`load_library` loaded in this process."""
    with _lock:
        return tuple(_loaded.values())


def _release(version: str) -> str:
    """``1.13.0a0+git`` -> ``1.13.0``: torch's headers know the release only."""
    match = re.match(r"\d+(\.\d+)*", version)
    return match.group(0) if match else version


def _namespace_ops(namespace: str) -> Tuple[str, ...]:
    prefix = namespace + "::"
    return tuple(sorted({schema.name[len(prefix):] for schema in torch._C._jit_get_all_schemas()
                         if schema.name.startswith(prefix)}))


def _read_marker(path: Path) -> Tuple[str, str, str, str]:
    try:
        found = {match.groups() for match in _MARKER.finditer(path.read_bytes())}
    except OSError as error:
        raise ImportError(f"physgrad.load_library: cannot read {path}: {error}") from error
    if not found:
        raise ImportError(f"physgrad.load_library: {path} is not a physgrad extension library (it has no "
                          f"PHYSGRAD_EXTENSION(namespace) from <physgrad/op.h>)")
    if len(found) > 1:
        names = ", ".join(sorted(group[0].decode() for group in found))
        raise ImportError(f"physgrad.load_library: {path} declares more than one extension ({names}); "
                          f"use PHYSGRAD_EXTENSION once per library")
    return tuple(part.decode("ascii", "replace") for part in found.pop())  # type: ignore[return-value]


def load_library(path: Union[str, Path]) -> Extension:
    """Loads the extension library at ``path`` (a ``.so`` built against this physgrad
    with ``find_package(physgrad)``) and returns its :class:`Extension`; its ops are
    then ``torch.ops.<namespace>.<op>``, in Python, TorchScript and ``torch.jit.load``.

    An ImportError, before anything is loaded, for a missing file, a library without
    ``PHYSGRAD_EXTENSION``, one built against another physgrad version (the op
    library's, :func:`physgrad.library_version`) or another torch (release and C++
    ABI), or one whose namespace is ``physgrad`` or was registered by another file
    (torch would abort the process). Loading the same file again returns the same
    :class:`Extension`.
    """
    path = Path(path)
    if not path.is_file():
        raise ImportError(f"physgrad.load_library: {path}: no such file (build the extension first, e.g. "
                          f"cmake --build <its build directory>)")
    namespace, built_physgrad, built_torch, built_abi = _read_marker(path)
    rebuild = (f"rebuild it against this physgrad ({ops.library_version()}) and torch ({torch.__version__}): "
               f"find_package(physgrad) from this installation")
    if built_physgrad != ops.library_version():
        raise ImportError(f"physgrad.load_library: {path} was built against physgrad {built_physgrad}, but the "
                          f"loaded op library is physgrad {ops.library_version()}; {rebuild}")
    if _release(built_torch) != _release(torch.__version__):
        raise ImportError(f"physgrad.load_library: {path} was built against torch {built_torch}, but this is "
                          f"torch {torch.__version__}; {rebuild}")
    this_abi = str(int(torch._C._GLIBCXX_USE_CXX11_ABI))
    if built_abi != this_abi:
        raise ImportError(f"physgrad.load_library: {path} was built with _GLIBCXX_USE_CXX11_ABI={built_abi}, "
                          f"but torch uses {this_abi}; {rebuild}")
    if namespace == "physgrad":
        raise ImportError(f"physgrad.load_library: {path} uses the op namespace 'physgrad', which is "
                          f"physgrad's own; name another one in PHYSGRAD_EXTENSION and TORCH_LIBRARY")
    with _lock:
        known = _loaded.get(namespace)
        if known is not None:
            if _library._same_file(known.path, path):
                return known
            raise ImportError(f"physgrad.load_library: the namespace '{namespace}' of {path} is registered "
                              f"already, by {known.path}; loading a second library with it would abort the "
                              f"process (torch allows one registration of a namespace)")
        loaded_before = any(_library._same_file(path, other)
                            for other in [*torch.ops.loaded_libraries, *_library._mapped_files()])
        if _namespace_ops(namespace) and not loaded_before:  # the same file again is harmless
            raise ImportError(f"physgrad.load_library: the op namespace '{namespace}' of {path} is registered "
                              f"already (ops {', '.join(_namespace_ops(namespace))}), by a library loaded "
                              f"without physgrad.load_library; loading it again from this file would abort "
                              f"the process")
        try:
            torch.ops.load_library(str(path))
        except OSError as error:
            raise ImportError(f"physgrad.load_library: cannot load {path}: {error}. It may be stale or built "
                              f"against another physgrad or torch; {rebuild}") from error
        abi = list(getattr(torch.ops, namespace).physgrad_abi())
        if abi[:2] != [built_physgrad, built_torch]:  # the marker and the op come from one macro
            raise ImportError(f"physgrad.load_library: {path}: {namespace}::physgrad_abi() returns {abi}, "
                              f"but the file says physgrad {built_physgrad}, torch {built_torch}")
        extension = Extension(namespace, path.resolve(), built_physgrad, built_torch,
                              tuple(op for op in _namespace_ops(namespace) if op != "physgrad_abi"))
        _loaded[namespace] = extension
        return extension


def resolve_mode(grad_mode: Optional[str], module_mode: Optional[str] = None) -> str:
    """The grad mode of a call, as the built-in modules resolve it (scriptable): an
    explicit ``grad_mode``, else (eager mode) an enclosing :func:`physgrad.grad_mode`
    block, else ``module_mode``, else ``"physical"``. For an extension's nn.Module."""
    return ops._mode(grad_mode, module_mode)


def after_forward(op: str, on_failure: str) -> None:
    """After an extension op's forward with ``on_failure="warn"`` (scriptable): warns
    when the solve recorded under ``op`` (``record_solve_info``) did not converge, a
    RuntimeWarning in eager mode, the op library's warning in scripted code."""
    ops._after_forward(op, on_failure)
