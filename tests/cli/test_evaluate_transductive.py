"""``cmer evaluate --test-groups``: refused when the checkpoint's run listed the test groups' clips (split.json),
unless ``--transductive`` declares it; a warning when the run folder cannot tell."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from contrastive_mer.cli.main import main
from contrastive_mer.config import to_dict
from contrastive_mer.data.datamodule import build_corpus
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.workflows import comparison
from tests.conftest import DEMO, TINY, cli_error

OVERRIDES = TINY + ["data.options.speakers=[0,1]", "data.options.clips_per_speaker_emotion=1"]


@pytest.fixture
def run_dir(tmp_path):
    cfg = load_config(DEMO, OVERRIDES)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": PairwiseContrastiveModule(cfg).state_dict(),
                "hyper_parameters": {"config": to_dict(cfg)}}, ckpt)
    ids = {r.groups["speaker"]: [] for r in build_corpus(cfg).records()}
    for r in build_corpus(cfg).records():
        ids[r.groups["speaker"]].append(r.id)
    return ckpt, ids


def _argv(ckpt, tmp_path, *extra):
    return ["evaluate", "--checkpoint", str(ckpt), "--output", str(tmp_path / "eval"), "--test-groups",
            *extra]


def test_refused_when_pretraining_saw_the_test_clips(run_dir, tmp_path, monkeypatch):
    ckpt, ids = run_dir
    first, second = sorted(ids)
    (ckpt.parent.parent / "split.json").write_text(json.dumps({"train": ids[first] + ids[second], "val": []}))
    line = cli_error(*_argv(ckpt, tmp_path, str(second)))
    assert "pretraining saw" in line and "--transductive" in line
    # declared transductive: it goes on (the evaluation itself is replaced here)
    called = {}
    monkeypatch.setattr(comparison, "evaluate_folds",
                        lambda *a, **k: called.update(k) or {"text": "ok"})
    assert main(_argv(ckpt, tmp_path, str(second), "--transductive")) == 0
    assert called["transductive"] is True and called["test_groups"] == [str(second)]


def test_goes_on_when_the_test_clips_were_not_pretrained_on(run_dir, tmp_path, monkeypatch):
    ckpt, ids = run_dir
    first, second = sorted(ids)
    (ckpt.parent.parent / "split.json").write_text(json.dumps({"train": ids[first], "val": []}))
    called = {}
    monkeypatch.setattr(comparison, "evaluate_folds", lambda *a, **k: called.update(k) or {"text": "ok"})
    assert main(_argv(ckpt, tmp_path, str(second))) == 0
    assert called["transductive"] is False


def test_warns_without_split_json(run_dir, tmp_path, monkeypatch):
    ckpt, ids = run_dir
    monkeypatch.setattr(comparison, "evaluate_folds", lambda *a, **k: {"text": "ok"})
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(_argv(ckpt, tmp_path, str(sorted(ids)[1]))) == 0
    assert "cannot tell whether pretraining saw" in err.getvalue()
