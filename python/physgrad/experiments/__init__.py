"""Registry of the paper's experiments: one module per experiment.

Adding an experiment is adding one file, ``physgrad/experiments/<name>.py``,
that defines a subclass of :class:`physgrad.experiments.base.Experiment` and
exports it as ``EXPERIMENT``. The file's name is the experiment's name on the
command line (``python3 -m physgrad train <name>``); its data generator goes to
``physgrad/data/<name>.py`` (re-exported from :mod:`physgrad.data`), the
methods it offers are the keys of its ``learning_rates`` (:mod:`physgrad.methods`
registers them); nothing else needs editing. Modules are discovered here and imported only when asked for, so a
broken or slow experiment does not affect the others.
"""
import importlib
import pkgutil
from typing import Any, List

from .base import DataSource, Experiment

__all__ = ["Experiment", "DataSource", "available_experiments", "get_experiment"]

_NOT_EXPERIMENTS = {"base"}


def available_experiments() -> List[str]:
    """Names of the experiment modules in this package, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if not info.name.startswith("_") and info.name not in _NOT_EXPERIMENTS)


def get_experiment(name: str, **options: Any) -> Experiment:
    """The experiment ``name`` (``-`` and ``_`` interchangeable), built with ``options``.

    Raises:
        ValueError: for an unknown name (the message lists the choices) or an
            option the experiment does not take.
    """
    module_name = name.replace("-", "_")
    choices = available_experiments()
    if module_name not in choices:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(choices)}")
    experiment_class = importlib.import_module(f"{__name__}.{module_name}").EXPERIMENT
    try:
        return experiment_class(**options)
    except TypeError as error:
        raise ValueError(f"experiment {name!r} does not accept options {sorted(options)}: "
                         f"{error}") from error
