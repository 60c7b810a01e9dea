"""Config loading: defaults, overrides, and one-line errors naming the bad key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from contrastive_mer.config import ConfigError
from contrastive_mer.experiment import load_config
from tests.conftest import DEMO


def test_demo_config_loads_and_overrides_apply():
    cfg = load_config(DEMO, ["data.batch_size=7", "loss.temperature=0.2"])
    assert cfg.data.batch_size == 7
    assert cfg.loss.temperature == 0.2
    assert list(cfg.model.modalities) == ["audio", "video", "text"]


@pytest.mark.parametrize("override, fragment", [
    (["data.bogus=1"], "bogus"),
    (["data.batch_size=many"], "batch_size"),
    (["model.modalities.audio.encoder=wavlm"], "unknown encoder 'wavlm'"),
    (["model.modalities.audio.encoder_args.n_mel=64"], "n_mel"),
    (["model.modalities.video.encoder_args.output_dim=big"], "output_dim"),
    (["model.modalities.face.encoder=mlp"], "unknown modality 'face'"),
    (["data.dataset=nonexistent"], "unknown dataset 'nonexistent'"),
    (["loss.pairs=[audio-face]"], "audio-face"),
    (["optim.name=lamb"], "optim.name"),
    (["trainer.precision=8-bit"], "trainer.precision"),
    (["loss.temperature=0.001"], "loss.temperature"),
    (["data.batch_size"], "key=value"),
])
def test_bad_config_raises_one_line_naming_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, override)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_single_modality_is_rejected(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("model:\n  modalities:\n    audio: {encoder: tcn}\n")
    with pytest.raises(ConfigError, match="at least two modalities"):
        load_config(path)


def test_cli_reports_config_error_in_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "contrastive_mer.cli.main", "pretrain", "--config", str(DEMO),
                           "--output", str(tmp_path / "run"), "data.bogus=1"], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bogus" in lines[0]


@pytest.mark.parametrize("name", ["demo", "paper", "ravdess", "ravdess_audio_au", "ravdess_fewlabels", "mosei"])
def test_shipped_experiment_configs_are_valid(name):
    cfg = load_config(DEMO.parent / f"{name}.yaml")
    assert len(cfg.model.modalities) >= 2


@pytest.mark.parametrize("name", ["paper", "paper_ravdess", "paper_mosei"])
def test_paper_configs_set_what_their_headers_claim(name):
    cfg = load_config(DEMO.parent / f"{name}.yaml", [] if name == "paper" else ["data.root=/nonexistent"])
    assert cfg.loss.name == "two_window_supcon" and cfg.loss.count_offset == 1 and cfg.loss.temperature == 0.07
    assert cfg.loss.label is None and cfg.loss.anchor_rule == "all"  # label-free (RAVDESS's official run is not)
    assert cfg.model.feature_dropout == 0.1
    mods = cfg.model.modalities
    assert mods.landmarks.encoder_args.graph == "official65" and mods.landmarks.encoder_args.self_loop_weight == 2
    if mods.audio.encoder == "tcn":  # dB relative to the clip maximum, computed before windowing, not twice
        assert mods.audio.preprocess.db_ref == "clip_max" and not mods.audio.encoder_args.get("db_scale", False)
    if name == "paper_mosei":
        assert cfg.data.two_window.frames == 30 and cfg.data.two_window.modality_frames.text == 30
        assert mods.text.encoder_args.positions == "time" and mods.text.feature_dropout == 0.0
        assert (mods.text.encoder_args.d_model, mods.text.encoder_args.heads, mods.text.encoder_args.layers) == \
            (300, 5, 6)
