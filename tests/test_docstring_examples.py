"""The ``>>>`` examples in the docstrings of the public entry points run, pass, and exist: each entry point below
must carry at least one example (a missing one fails here too)."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: (module, entry point) whose docstring must hold a runnable example
ENTRY_POINTS = [
    ("contrastive_mer.pretrain.loop", "pretrain"),
    ("contrastive_mer.extract.extraction", "extract"),
    ("contrastive_mer.extract.extraction", "extract_from_checkpoint"),
    ("contrastive_mer.store.hdf5", "FeatureStore"),
    ("contrastive_mer.evaluation.linear", "linear_probe"),
    ("contrastive_mer.evaluation.knn", "knn_probe"),
    ("contrastive_mer.distributed", "env_int"),
    ("contrastive_mer.distributed", "is_launched_rank"),
]


@pytest.mark.parametrize("module_name, name", ENTRY_POINTS, ids=[f"{m.rsplit('.', 1)[1]}.{n}" for m, n in ENTRY_POINTS])
def test_docstring_example_runs(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    finder = doctest.DocTestFinder(recurse=False)
    tests = [t for t in finder.find(obj, f"{module_name}.{name}", module=module, globs=vars(module).copy())
             if t.examples]
    assert tests, f"{module_name}.{name} has no >>> example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {module_name}.{name} failed"
