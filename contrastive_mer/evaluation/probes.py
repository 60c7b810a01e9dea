"""The probe registry: ``PROBES`` maps a probe's name to its function, its config class and the extra numbers a
result row carries.

Every probe shares one signature::

    probe(X_train, y_train, X_test, y_test, config, *, groups_train=None, num_classes=None) -> result

``config`` is the probe's own config dataclass (``None``: its defaults; it has a ``task`` field), ``groups_train``
the training rows' groups (the linear probe keeps its validation split group-disjoint; the others ignore it),
``num_classes`` the number of classes of a multiclass label (``None``: inferred). The result has ``metrics``
(scored when ``y_test`` is given), ``n_train`` and ``n_test``.

The built-in probes are registered here rather than in their own modules, so that a module reading ``linear.py``
alone (or a ``cmer`` subcommand's ``--help``, which must not import torch) never depends on this table. A new
probe: a function with the signature above, registered with ``PROBES.register(name, Probe(fn, ConfigClass))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from contrastive_mer.evaluation.knn import KnnProbeConfig, knn_probe
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.evaluation.mlp_probe import MLPProbeConfig, mlp_probe
from contrastive_mer.registry import Registry


class ProbeFn(Protocol):
    def __call__(self, X_train: Any, y_train: Any, X_test: Any, y_test: Any = None, config: Any = None, *,
                 groups_train: Any = None, num_classes: int | None = None) -> Any: ...


def _no_extra(result: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Probe:
    """A registered probe: ``run`` (the shared signature), ``config`` (its config dataclass, with a ``task``
    field) and ``extra`` (result -> the numbers its result rows carry besides the metrics)."""

    run: ProbeFn
    config: type
    extra: Callable[[Any], dict[str, Any]] = field(default=_no_extra)


#: probe name -> :class:`Probe`
PROBES: Registry[Probe] = Registry("probe")
#: the probes ``run_probes`` runs by default, in its table's row order
DEFAULT_PROBES = ("linear", "knn", "mlp")

PROBES.register("linear", Probe(linear_probe, LinearProbeConfig, lambda r: {"weight_decay": r.weight_decay}))
PROBES.register("knn", Probe(knn_probe, KnnProbeConfig, lambda r: {"k": r.k}))
# the official code's 2-layer classifier
PROBES.register("mlp", Probe(mlp_probe, MLPProbeConfig))
