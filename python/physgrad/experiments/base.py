"""The interface every experiment implements (one module per experiment).

An experiment is an inverse problem ``find x such that P(x) = y*`` learned by
a network ``x = f(y*)``. It provides the pieces the training loop combines:

=====================  ====================================================
``make_network()``     a fresh network (the caller seeds the initialization)
``make_data(seed)``    a seeded source whose ``sample(batch_size)`` returns a
                       batch (any object; only this experiment looks inside)
``predict(net, b)``    the network's solution ``x`` for batch ``b``, including
                       post-processing (e.g. heat keeps the observed mean)
``simulate(x, b, m)``  the physgrad op ``y = P(x)`` with backward mode ``m``
``y_loss(y, b)``       the sum-reduced y-space loss the physics methods train
                       and the log reports
``training_loss``      the loss a method trains on (default ``y_loss``; the
                       fluid's adjoint method trains on the paper's frequency
                       objective, its inverse modes on L2)
``supervised_loss``    the x-space loss against ``x*`` (``supervised`` method)
``x_metric(x, b)``     the reported accuracy: mean absolute error of ``x``
                       (or the experiment's own metric, named by ``metric_name``)
``evaluate(nets, ..)`` optional extra report on trained networks (e.g. a
                       classical solver on a test set); default none
=====================  ====================================================

plus defaults: ``default_iterations``, ``default_batch_size`` and
``learning_rates``, a table ``method name -> learning rate`` whose keys are the
methods the experiment offers.

The defaults below fit the field experiments (Poisson, heat): batches are
:class:`physgrad.data.FieldPair` ``(x_star, y_star)`` of ``[B, ny, nx]``, the
network maps ``y*`` as one input channel to ``x`` as one output channel.
Experiments with other data (fluid: ``[m0, m_t] -> v0``) override them.
"""
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Dict, Optional, Protocol

import torch
from torch import nn

__all__ = ["Experiment", "DataSource"]


class DataSource(Protocol):
    """A seeded, endless batch sequence (see :mod:`physgrad.data`).

    ``sample(batch_size, part=None)``: the next batch; with ``part`` (a slice
    of ``range(batch_size)``, data-parallel training) only those examples of
    it, the generator advancing as for the whole batch. Sources without a
    ``part`` argument work too: the training loop then samples the whole batch
    and slices it (exact, but every rank computes every ``y*``).
    """

    def sample(self, batch_size: int, part: Optional[slice] = None) -> Any: ...

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


class Experiment(ABC):
    """Base class of the experiments; see the module docstring."""

    #: registry name, e.g. ``"poisson"`` (the module's name)
    name: ClassVar[str]
    #: one line for ``--help`` and ``list``
    description: ClassVar[str] = ""
    default_iterations: ClassVar[int] = 1000
    default_batch_size: ClassVar[int] = 128
    #: method name -> learning rate; the keys are the methods offered
    learning_rates: ClassVar[Dict[str, float]] = {}
    #: short name of :meth:`x_metric` for tables (the log's ``x_mae`` column holds it)
    metric_name: ClassVar[str] = "x-MAE"
    #: axis label of :meth:`x_metric` in plots
    metric_description: ClassVar[str] = "x MAE  |x - x*| (mean)"
    #: running-mean window of the learning-curve plots (0: about 1% of the run)
    plot_smoothing: ClassVar[int] = 0

    @abstractmethod
    def make_network(self) -> nn.Module:
        """A freshly initialized network (seed torch's RNG before calling)."""

    @abstractmethod
    def make_data(self, seed: int) -> DataSource:
        """The data source whose batches this experiment consumes."""

    @abstractmethod
    def simulate(self, x: torch.Tensor, batch: Any, grad_mode: Optional[str]) -> torch.Tensor:
        """``y = P(x)`` through the physgrad op, backward mode ``grad_mode``
        (``None``: the op's default or the enclosing ``physgrad.grad_mode``)."""

    def network_input(self, batch: Any) -> torch.Tensor:
        """Network input: ``y*`` as one channel, ``[B, 1, ny, nx]``."""
        return batch.y_star.unsqueeze(1)

    def postprocess(self, x: torch.Tensor, batch: Any) -> torch.Tensor:
        """Post-processing of the raw prediction ``x`` (differentiable); none here."""
        return x

    def predict(self, network: nn.Module, batch: Any) -> torch.Tensor:
        """The network's solution: ``x`` of the shape of ``x*``, ``[B, ny, nx]``."""
        return self.postprocess(network(self.network_input(batch)).squeeze(1), batch)

    def y_loss(self, y: torch.Tensor, batch: Any) -> torch.Tensor:
        """``0.5 * sum((y - y*)^2)`` over batch and grid (``physgrad.losses.l2``)."""
        from physgrad import losses
        return losses.l2(y, batch.y_star)

    def training_loss(self, y: torch.Tensor, batch: Any, grad_mode: Optional[str]) -> torch.Tensor:
        """The loss a physics method with backward ``grad_mode`` minimizes; default
        :meth:`y_loss`. The inverse modes (``physical``, ``newton``, ``lbfgs``) need
        ``physgrad.losses.l2`` (its gradient ``y - y*`` makes their target ``y*``);
        an experiment whose own objective differs may return it for ``adjoint``."""
        return self.y_loss(y, batch)

    def supervised_loss(self, x: torch.Tensor, batch: Any) -> torch.Tensor:
        """``0.5 * sum((x - x*)^2)``: its gradient is ``x - x*``, the same
        y-independent step a perfect physical gradient gives."""
        from physgrad import losses
        return losses.l2(x, batch.x_star)

    def x_metric(self, x: torch.Tensor, batch: Any) -> torch.Tensor:
        """Mean absolute error of ``x`` against ``x*`` (a scalar)."""
        return (x - batch.x_star).abs().mean()

    def options(self) -> Dict[str, Any]:
        """The constructor options of this instance, for logs and results.json."""
        return {}

    def evaluate(self, networks: Dict[str, nn.Module], out_dir: Optional[str] = None,
                 histories: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
        """Experiment-specific report on trained networks (method -> network), with
        their training ``histories`` (method -> :class:`physgrad.training.History`)
        where known; files go to ``out_dir``. Returns a JSON-ready dict whose
        ``"text"`` the CLI prints, or None (the default: nothing to add)."""
        return None
