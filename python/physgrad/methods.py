"""Training methods: a backward mode of the physics op plus an optimizer.

The registry :data:`METHODS` holds every method of physgrad, registered once,
here: ``adam``, ``adam+pg``, ``adam+lbfgs``, ``sgd``, ``supervised`` (see
:mod:`physgrad.training`) and the two that only some ops' modes support,
``adam+newton`` (sine, wave packet) and ``adam+inverse-gradient`` (sine). An
experiment offers a method by giving it a learning rate
(``Experiment.learning_rates``); code outside physgrad adds methods with
:func:`register_method`.
"""
import dataclasses
from typing import Dict, Iterable, Optional

import torch
from torch import nn

from .experiments import Experiment

__all__ = ["Method", "METHODS", "register_method", "get_method", "make_optimizer"]


@dataclasses.dataclass(frozen=True)
class Method:
    """How the network is trained.

    Attributes:
        name: registry name, e.g. ``"adam+pg"``.
        grad_mode: backward mode of the physics op; ``None`` for supervised
            training (x-space loss, no physics in the backward).
        optimizer: ``"adam"`` or ``"sgd"``.
        description: one line for ``--help`` and logs.
        momentum: SGD momentum (ignored by Adam).
    """
    name: str
    grad_mode: Optional[str]
    optimizer: str
    description: str = ""
    momentum: float = 0.9


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add (or replace) a method, e.g. one with another op mode:
    ``register_method(Method("adam+mine", "my_mode", "adam"))``."""
    if method.optimizer not in ("adam", "sgd"):
        raise ValueError(f"method {method.name!r}: unknown optimizer {method.optimizer!r}; "
                         "choose adam or sgd")
    METHODS[method.name] = method
    return method


for _method in (
        Method("adam", "adjoint", "adam", "Adam through the adjoint (true gradient)"),
        Method("adam+pg", "physical", "adam", "Adam with physical gradients"),
        Method("adam+lbfgs", "lbfgs", "adam", "Adam with the op's L-BFGS inverse step"),
        Method("sgd", "adjoint", "sgd", "SGD with momentum 0.9 through the adjoint"),
        Method("supervised", None, "adam", "Adam on 0.5*||x - x*||^2, no physics in backward"),
        Method("adam+newton", "newton", "adam", "Adam with the op's (Gauss-)Newton step as gradient"),
        Method("adam+inverse-gradient", "inverse_gradient", "adam",
               "Adam with the op's inverted first-order gradient")):
    register_method(_method)


def get_method(name: str, experiment: Optional[Experiment] = None) -> Method:
    """The method ``name``; with ``experiment``, also check the experiment offers it.

    Raises:
        ValueError: listing the choices, for an unknown or unoffered method.
    """
    offered = list(experiment.learning_rates) if experiment is not None else list(METHODS)
    if name not in METHODS or name not in offered:
        where = f" for experiment {experiment.name!r}" if experiment is not None else ""
        raise ValueError(f"unknown method {name!r}{where}; choose one of: {', '.join(offered)}")
    return METHODS[name]


def make_optimizer(method: Method, parameters: Iterable[nn.Parameter],
                   learning_rate: float) -> torch.optim.Optimizer:
    """The optimizer of ``method`` over ``parameters``."""
    if method.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, momentum=method.momentum)
    return torch.optim.Adam(parameters, lr=learning_rate)
