"""``CMER_DATA_ROOT`` overrides the config's data.root; a command-line ``data.root=...`` overrides both."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from contrastive_mer.config import to_dict
from contrastive_mer.experiment import config_for_checkpoint, load_config
from contrastive_mer.frontend.inputs import dataset_config, load_frontend_yaml
from tests.conftest import ROOT


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CMER_DATA_ROOT", raising=False)
    cfg = OmegaConf.load(ROOT / "experiments" / "ravdess.yaml")
    cfg.data.root = "/from/file"
    OmegaConf.save(cfg, tmp_path / "exp.yaml")
    return tmp_path / "exp.yaml"


def test_precedence_override_then_environment_then_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(config).data.root == "/from/file"
    monkeypatch.setenv("CMER_DATA_ROOT", "/from/env")
    assert load_config(config).data.root == "/from/env"
    assert load_config(config, ["data.root=/from/cli"]).data.root == "/from/cli"
    monkeypatch.setenv("CMER_DATA_ROOT", "")  # empty: as if unset
    assert load_config(config).data.root == "/from/file"


def test_checkpoint_configs_follow_the_same_precedence(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = to_dict(load_config(config))  # what a checkpoint saved
    monkeypatch.setenv("CMER_DATA_ROOT", "/from/env")
    assert config_for_checkpoint(trained).data.root == "/from/env"  # cmer extract without --config
    assert config_for_checkpoint(trained, config).data.root == "/from/env"
    assert config_for_checkpoint(trained, None, ["data.root=/cli"]).data.root == "/cli"
    # cmer frontend-export: its YAML's data section and its key=value overrides sit above the variable
    data = load_frontend_yaml(None, ["data.root=/cli"])["data"]
    assert dataset_config(trained, data).data.root == "/cli"
    assert dataset_config(trained, None).data.root == "/from/env"


def test_relative_environment_value_is_relative_to_the_current_folder(config: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMER_DATA_ROOT", "corpus")
    assert load_config(config).data.root == "corpus"
    monkeypatch.setenv("CMER_DATA_ROOT", "~/corpus")
    assert load_config(config).data.root == str(Path.home() / "corpus")
