"""The loss interface: the module trains with whatever :class:`ContrastiveLoss` ``loss.name`` names (it never asks
which), both built-in losses spell per-pair metric keys one way, and the ``loss`` section is checked by the loss
module with one-line errors listing the known names."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastive_mer.config import ConfigError
from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.experiment import load_config
from contrastive_mer.model.losses import (
    LOSSES,
    ContrastiveLoss,
    LossOutput,
    PairwiseInfoNCE,
    TwoWindowLoss,
    build_loss,
    check_config,
    pair_name,
)
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.registry import UnknownName
from tests.conftest import DEMO, TINY, fast_dev_run_changes

KEY = re.compile(r"^[a-z]+-[a-z]+$")


class ToyLoss(ContrastiveLoss):
    """Pulls every modality's mean projection towards the others'; counts its calls."""

    rows_per_clip = 1

    def __init__(self, modalities, temperature: float = 1.0, *, pairs=None):
        super().__init__(modalities, pairs)
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.calls = 0
        self.clamps = 0

    @classmethod
    def from_config(cls, loss_cfg, modalities):
        return cls(modalities, loss_cfg.temperature, pairs=list(loss_cfg.pairs))

    def forward(self, embeddings, present, labels=None):
        self.calls += 1
        out = LossOutput(loss=next(iter(embeddings.values())).new_zeros(()))
        for (a, b), name in zip(self.pairs, self.pair_names):
            value = self.scale * (embeddings[a].mean(0) - embeddings[b].mean(0)).pow(2).sum()
            out.loss = out.loss + value
            out.per_pair[name] = value.detach()
            out.accuracy[name] = torch.tensor(0.5)
            out.count[name] = len(embeddings[a])
        return out

    def temperatures(self):
        return {name: 1.0 / float(self.scale.detach()) for name in self.pair_names}

    def clamp_(self):
        self.clamps += 1


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(LOSSES._entries, "toy", ToyLoss)
    return ToyLoss


def test_module_trains_with_a_toy_loss_it_does_not_know(toy_registered):
    cfg = load_config(DEMO, [*TINY, "loss.name=toy"])
    module = PairwiseContrastiveModule(cfg)
    assert isinstance(module.loss_fn, ToyLoss)
    assert "loss_fn.scale" in module.state_dict()
    data = MERDataModule(cfg)
    changed, trainer = fast_dev_run_changes(module, data)
    assert changed == set(module.modalities)
    assert module.loss_fn.calls >= 1 and module.loss_fn.clamps >= 1
    assert module.loss_fn.scale.item() != 2.0  # trained as a parameter of the module
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "train/loss_audio-video" in trainer.callback_metrics


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_both_builtin_losses_spell_pair_keys_one_way():
    mods = ["audio", "video", "text"]
    emb = {m: _unit(6, 8, seed=i) for i, m in enumerate(mods)}
    present = {m: torch.ones(6, dtype=torch.bool) for m in mods}
    pairwise = PairwiseInfoNCE(mods)(emb, present)
    two = TwoWindowLoss(mods)(emb, present)  # 6 rows: window 0 then window 1 of 3 clips
    unordered = {pair_name(a, b) for a, b in itertools.combinations(mods, 2)}
    ordered = {pair_name(a, b) for a, b in itertools.permutations(mods, 2)}
    assert set(pairwise.per_pair) == set(pairwise.accuracy) == set(pairwise.count) == unordered
    assert set(two.per_pair) == set(two.accuracy) == set(two.count) == ordered
    for out in (pairwise, two):
        assert all(KEY.match(k) for k in [*out.per_pair, *out.accuracy, *out.count])
    for loss in (PairwiseInfoNCE(mods), TwoWindowLoss(mods)):
        assert set(loss.temperatures()) == unordered


def test_two_window_loss_reads_the_two_halves_and_its_label():
    mods = ["audio", "video"]
    emb = {m: _unit(8, 5, seed=i) for i, m in enumerate(mods)}
    present = {m: torch.ones(8, dtype=torch.bool) for m in mods}
    labels = {"emotion": torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])}
    out = TwoWindowLoss(mods, label="emotion")(emb, present, labels)
    assert torch.isfinite(out.loss) and out.count["audio-video"] == 4
    with pytest.raises(Exception, match="no label 'emotion'"):
        TwoWindowLoss(mods, label="emotion")(emb, present, {})


def test_loss_constructor_flags_are_keyword_only():
    with pytest.raises(TypeError):
        PairwiseInfoNCE(["a", "b"], 0.07, True)  # type: ignore[misc]
    with pytest.raises(TypeError):
        TwoWindowLoss(["a", "b"], 0.07, ["a-b"])  # type: ignore[misc]
    assert PairwiseInfoNCE(["a", "b"], 0.07, learnable_temperature=True).learnable


def test_build_loss_by_name_and_unknown_names_list_the_known_ones():
    cfg = load_config(DEMO, TINY)
    assert type(build_loss(cfg.loss, list(cfg.model.modalities))) is PairwiseInfoNCE
    with pytest.raises(UnknownName, match="unknown loss 'supcon'; known: pairwise_infonce, two_window_supcon"):
        LOSSES.get("supcon")
    cfg.loss.name = "supcon"
    with pytest.raises(ConfigError, match="^loss.name: unknown loss 'supcon'; known: pairwise_infonce, two_window"):
        check_config(cfg.loss, list(cfg.model.modalities))


@pytest.mark.parametrize("overrides, fragment", [
    (["loss.pairs=[audio-smell]"], "loss.pairs: 'audio-smell'"),
    (["loss.temperature=0.001"], "loss.temperature: 0.001 must be > 0 and >= 1/max_logit_scale"),
    (["loss.count_offset=1"], "only for loss.name=two_window_supcon"),
    (["loss.name=two_window_supcon", "loss.learnable_temperature=true", "data.two_window.frames=4"],
     "loss.learnable_temperature: not available"),
])
def test_loss_section_errors_are_one_line(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)) as err:
        load_config(DEMO, [*TINY, *overrides])
    assert "\n" not in str(err.value)


def test_learnable_temperature_keeps_its_state_dict_name():
    """Old checkpoints hold ``loss_fn.log_scale``; the loss interface must not rename it."""
    cfg = load_config(DEMO, [*TINY, "loss.learnable_temperature=true"])
    module = PairwiseContrastiveModule(cfg)
    state = module.state_dict()
    assert "loss_fn.log_scale" in state and state["loss_fn.log_scale"].shape == (3,)
    fixed = PairwiseContrastiveModule(load_config(DEMO, TINY)).state_dict()
    assert not any(k.startswith("loss_fn.") for k in fixed)  # a fixed temperature is not saved
    again = PairwiseContrastiveModule(cfg)
    again.load_state_dict(state)
