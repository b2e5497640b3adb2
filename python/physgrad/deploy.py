"""Files for running scripted physgrad models outside Python (``examples/deploy_cpp``).

In Python::

    torch.jit.save(torch.jit.script(model), "model.pt")       # the modules' grad_mode attributes are saved
    physgrad.deploy.save_tensors("input.pt", input=y_star)      # what the C++ program reads

then ``deploy_cpp model.pt input.pt output.pt`` and ``torch.load("output.pt")``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

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
