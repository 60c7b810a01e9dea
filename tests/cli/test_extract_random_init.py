"""``cmer extract --random-init``: the checkpoint's architecture untrained, by the random-init column's seed rule."""

from __future__ import annotations

import numpy as np
import torch

from contrastive_mer.cli.main import main
from contrastive_mer.config import to_dict
from contrastive_mer.experiment import load_config
from contrastive_mer.extract.extraction import UNTRAINED, ExtractOptions, extract
from contrastive_mer.model.module import PairwiseContrastiveModule, random_init_like
from contrastive_mer.store.hdf5 import FeatureStore
from tests.conftest import DEMO, TINY

OVERRIDES = TINY + ["data.options.speakers=[0]", "data.options.clips_per_speaker_emotion=1", "seed=3"]


def test_random_init_store_equals_random_init_like_encodings(tmp_path):
    cfg = load_config(DEMO, OVERRIDES)
    torch.manual_seed(123)  # "trained" weights that differ from the seeded untrained ones
    trained = PairwiseContrastiveModule(cfg)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": {"config": to_dict(cfg)}}, ckpt)

    out = tmp_path / "random.h5"
    assert main(["extract", "--checkpoint", str(ckpt), "--out", str(out), "--random-init", "--no-progress",
                 "--device", "cpu"]) == 0
    ref = extract(random_init_like(cfg), cfg, tmp_path / "ref.h5", ExtractOptions(device="cpu", progress=False))
    with FeatureStore(out) as got, FeatureStore(ref) as want:
        assert got.attrs["checkpoint_sha256"] == UNTRAINED == "untrained"
        assert list(got.ids) == list(want.ids) and len(got) > 0
        for key in [*(f"features/{m}" for m in cfg.model.modalities), "fused/concat", "fused/mean"]:
            np.testing.assert_array_equal(got.dataset(key), want.dataset(key), err_msg=key)
        # and it is not the checkpoint's weights
        trained_out = extract(trained.eval(), cfg, tmp_path / "trained.h5",
                              ExtractOptions(device="cpu", progress=False))
        with FeatureStore(trained_out) as t:
            assert not np.allclose(t.dataset("fused/concat"), got.dataset("fused/concat"))
