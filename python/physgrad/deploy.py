"""Files for running scripted physgrad models outside Python (``examples/deploy_cpp``).

In Python::

    torch.jit.save(torch.jit.script(model), "model.pt")       # the modules' grad_mode attributes are saved
    physgrad.deploy.save_tensors("input.pt", input=y_star)      # what the C++ program reads

then ``deploy_cpp model.pt input.pt output.pt`` and ``torch.load("output.pt")``.

A scripted model with physgrad ops loads only where the op library is loaded:
in Python ``import physgrad`` first, or load it with :func:`load`, which does
(a bare ``torch.jit.load`` in a process without physgrad fails with torch's
``Unknown builtin op: physgrad::poisson``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch


class _Tensors(torch.nn.Module):
    """A module whose buffers are the tensors to exchange (scriptable, no methods)."""

    def __init__(self, tensors: Dict[str, torch.Tensor]) -> None:
        super().__init__()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor.detach().cpu().contiguous())


def save_tensors(path: Union[str, Path], **tensors: torch.Tensor) -> None:
    """Saves named tensors as a TorchScript module with one buffer per tensor.

    C++ reads them with ``torch::jit::load(path).attr(name).toTensor()``, the
    loader the model goes through; dtype and shape are kept. (``torch.save``
    files are not read reliably by ``torch::jit::pickle_load``: a dict with one
    entry fails, pytorch/pytorch#67902.)
    """
    if not tensors:
        raise ValueError("physgrad.deploy.save_tensors: give at least one tensor, e.g. input=x")
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"physgrad.deploy.save_tensors: {name} is a {type(tensor).__name__}, not a tensor")
    torch.jit.save(torch.jit.script(_Tensors(tensors)), str(path))


def load_tensors(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The tensors of a file written by :func:`save_tensors`, by name."""
    return dict(torch.jit.load(str(path)).named_buffers())


def load(path: Union[str, Path], map_location: Optional[Any] = None) -> torch.jit.ScriptModule:
    """``torch.jit.load(path)`` with the physgrad op library loaded (importing this
    module imports physgrad, which loads it). A model that uses a physgrad op
    this library does not have (saved by another physgrad version) is an error
    that names the op and both versions."""
    from . import _version, ops
    try:
        return torch.jit.load(str(path), map_location=map_location)
    except RuntimeError as error:
        match = re.search(r"Unknown builtin op: (physgrad::\w+)", str(error))
        if match is None:
            raise
        raise RuntimeError(f"physgrad.deploy.load: {path} uses the op {match.group(1)}, which this physgrad op "
                           f"library (version {ops.library_version()}, package {_version.__version__}) does "
                           f"not have: it was saved with another physgrad version; load it with that version, "
                           f"or script and save the model again with this one") from error
