"""Relative data.root in a config file resolves against the file's folder (issue 12 item 8), and the front-end
YAML's data section fits every shipped experiment's dataset (item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from contrastive_mer.config import load_yaml, to_dict
from contrastive_mer.data.datasets.base import adapter_options
from contrastive_mer.experiment import config_for_checkpoint, load_config
from contrastive_mer.frontend.inputs import dataset_config, load_frontend_yaml
from tests.conftest import ROOT, SHARED_DATA


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """configs/exp.yaml beside configs/corpus/, and the current folder elsewhere (tmp_path/work)."""
    (tmp_path / "configs" / "corpus").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def write(path: Path, root: str) -> Path:
    """The RAVDESS experiment with ``data.root: root`` (nothing is read from it here)."""
    cfg = OmegaConf.load(ROOT / "experiments" / "ravdess.yaml")
    cfg.data.root = root
    OmegaConf.save(cfg, path)
    return path


def test_relative_root_resolves_against_the_config_folder(layout: Path) -> None:
    cfg = write(layout / "configs" / "exp.yaml", "corpus")
    assert load_config(cfg).data.root == str((layout / "configs" / "corpus").resolve())
    assert load_yaml(cfg).data.root == str((layout / "configs" / "corpus").resolve())  # front-end YAMLs too
    # extract/evaluate read a data-only YAML beside a checkpoint's model
    trained = to_dict(load_config(ROOT / "experiments" / "ravdess.yaml"))
    assert config_for_checkpoint(trained, cfg).data.root == str((layout / "configs" / "corpus").resolve())


def test_fallback_to_the_current_folder_and_overrides(layout: Path) -> None:
    (layout / "work" / "here").mkdir()
    cfg = write(layout / "configs" / "exp.yaml", "here")  # not beside the config, but in the current folder
    assert load_config(cfg).data.root == "here"
    cfg = write(layout / "configs" / "exp.yaml", "corpus")
    assert load_config(cfg, ["data.root=corpus"]).data.root == "corpus"  # a command-line path: current folder
    cfg = write(layout / "configs" / "exp.yaml", "nowhere")
    assert load_config(cfg).data.root == "nowhere"  # kept as written: the adapter names it when it is missing
    cfg = write(layout / "configs" / "exp.yaml", str(layout / "abs"))
    assert load_config(cfg).data.root == str(layout / "abs")
    (layout / "configs" / "i.yaml").write_text("x: corpus\ndata:\n  root: ${x}\n")
    assert load_yaml(layout / "configs" / "i.yaml").data.root == "corpus"  # interpolations are left alone


@pytest.mark.skipif(not (SHARED_DATA / "ravdess").is_dir(), reason="../shared/data/ravdess not present")
def test_shipped_ravdess_configs_work_from_any_folder(layout: Path) -> None:
    for name in ("ravdess.yaml", "ravdess_audio_au.yaml", "ravdess_speaker.yaml"):
        cfg = load_config(ROOT / "experiments" / name)
        assert cfg.data.root == str((SHARED_DATA / "ravdess").resolve()), name


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "experiments").glob("*.yaml")
                                        if p.name != "mllm_frontend.yaml"))
def test_frontend_yaml_data_section_fits_every_shipped_dataset(name: str) -> None:
    """`cmer frontend-export --config experiments/mllm_frontend.yaml` lays its data section over the
    checkpoint's: the options must be valid for every corpus a shipped experiment trains on."""
    trained = to_dict(load_config(ROOT / "experiments" / name))
    yaml = load_frontend_yaml(ROOT / "experiments" / "mllm_frontend.yaml")
    cfg = dataset_config(trained, yaml.get("data"))
    assert cfg.data.dataset == trained["data"]["dataset"]
    options = adapter_options(cfg.data.dataset, dict(cfg.data.options))
    assert options.speakers is None
