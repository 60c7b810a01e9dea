"""The probe registry: linear, kNN and MLP probes under one signature, looked up by name."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from contrastive_mer.evaluation.probes import DEFAULT_PROBES, PROBES, Probe
from contrastive_mer.evaluation.protocol import ProbeView, run_probes
from contrastive_mer.registry import UnknownName

SHARED = ["X_train", "y_train", "X_test", "y_test", "config"]


def test_registry_lists_the_built_in_probes():
    assert PROBES.names() == ["knn", "linear", "mlp"]
    assert set(DEFAULT_PROBES) == set(PROBES.names())


@pytest.mark.parametrize("name", ["linear", "knn", "mlp"])
def test_every_probe_has_the_shared_signature(name):
    params = list(inspect.signature(PROBES.get(name).run).parameters.values())
    assert [p.name for p in params[:5]] == SHARED
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:5])
    rest = params[5:]
    assert [p.name for p in rest] == ["groups_train", "num_classes"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None for p in rest)


def test_unknown_probe_names_list_the_known_ones():
    with pytest.raises(UnknownName, match="unknown probe 'svm'; known: knn, linear, mlp"):
        PROBES.get("svm")
    view = ProbeView("v", np.zeros((4, 2)), np.array([0, 1, 0, 1]), None, np.zeros((2, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"unknown probe\(s\) \['svm'\]; known: knn, linear, mlp"):
        run_probes([view], "multiclass", probes=["svm"])


def test_a_registered_probe_runs_through_the_protocol(monkeypatch):
    from dataclasses import dataclass

    @dataclass
    class MajorityConfig:
        task: str = "multiclass"

    @dataclass
    class MajorityResult:
        metrics: dict
        n_train: int
        n_test: int

    def majority(X_train, y_train, X_test, y_test=None, config=None, *, groups_train=None, num_classes=None):
        guess = np.bincount(y_train).argmax()
        return MajorityResult({"accuracy": float(np.mean(np.asarray(y_test) == guess))}, len(y_train), len(X_test))

    monkeypatch.setitem(PROBES._entries, "majority", Probe(majority, MajorityConfig))
    view = ProbeView("v", np.zeros((5, 2)), np.array([1, 1, 1, 0, 2]), None, np.zeros((4, 2)),
                     np.array([1, 1, 0, 2]))
    res = run_probes([view], "multiclass", probes=["majority"], num_classes=3)
    assert res.rows[0].probe == "majority" and res.rows[0].metrics["accuracy"] == 0.5
    assert res.setup["majority"] == {"task": "multiclass"}


def test_cli_probe_choices_cover_the_registry():
    from contrastive_mer.cli.probe import _PROBES  # literal there: --help must not import torch

    assert set(_PROBES["all"]) == set(PROBES.names())
    assert all(set(chosen) <= set(PROBES.names()) for chosen in _PROBES.values())
