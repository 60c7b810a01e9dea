"""The one YAML + dotlist loader and the one "model from the checkpoint, the rest from the config" rule."""

from __future__ import annotations

import pytest

from contrastive_mer.config import ConfigError, load_yaml, to_dict
from contrastive_mer.experiment import config_for_checkpoint, load_config
from contrastive_mer.frontend.inputs import dataset_config, load_frontend_yaml
from tests.conftest import DEMO, TINY


def test_load_yaml_layers_and_one_line_errors(tmp_path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text("a: {b: 1, c: [1, 2]}\nd: x\n")
    cfg = load_yaml(f, ["a.b=3", "e=4"])
    assert cfg.a.b == 3 and list(cfg.a.c) == [1, 2] and cfg.d == "x" and cfg.e == 4
    assert dict(load_yaml(None, [])) == {}
    with pytest.raises(ConfigError, match="config file not found: .*missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="override 'oops' is not key=value"):
        load_yaml(f, ["oops"])
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_yaml(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match=r"demo.yaml: .*'many'.* \(key: trainer.max_epochs\)"):  # schema-typed
        load_config(DEMO, ["trainer.max_epochs=many"])


def test_model_from_checkpoint_takes_the_model_from_the_checkpoint_only(tmp_path) -> None:
    trained = to_dict(load_config(DEMO, TINY + ["data.options.noise=0.9", "seed=5"]))
    # no config: the checkpoint's own settings, with overrides
    cfg = config_for_checkpoint(trained, overrides=["data.options.speakers=[1]"])
    assert cfg.seed == 5 and list(cfg.data.options.speakers) == [1] and cfg.data.options.noise == 0.9
    # a config file replaces every section but the model (no option of the checkpoint's corpus leaks in)
    other = tmp_path / "other.yaml"
    other.write_text("data: {dataset: synthetic, options: {num_speakers: 2}}\n"
                     "model: {head: {output_dim: 999}}\n")
    cfg = config_for_checkpoint(trained, other)
    assert dict(cfg.data.options) == {"num_speakers": 2} and cfg.seed == 0
    assert to_dict(cfg)["model"] == trained["model"]
    # partial layers are merged (the front end's data section), then overrides
    cfg = config_for_checkpoint(trained, layers=[{"data": {"options": {"speakers": None}}}, {"seed": 7}])
    assert cfg.data.options.speakers is None and cfg.data.options.noise == 0.9 and cfg.seed == 7
    assert to_dict(cfg) == to_dict(dataset_config(trained, {"options": {"speakers": None}}, seed=7))
    for bad in ({"overrides": ["model.head.output_dim=3"]}, {"layers": [{"model": {}}]}):
        with pytest.raises(ConfigError, match=r"model\.\* cannot be overridden"):
            config_for_checkpoint(trained, **bad)


def test_frontend_yaml_uses_the_same_loader(tmp_path) -> None:
    f = tmp_path / "front.yaml"
    f.write_text("frontend: {projector: mlp}\ndata: {options: {speakers: null}}\n")
    assert load_frontend_yaml(f, ["frontend.level=feature"]) == {
        "frontend": {"projector": "mlp", "level": "feature"}, "data": {"options": {"speakers": None}}}
    with pytest.raises(ConfigError, match="override 'x' is not key=value"):
        load_frontend_yaml(f, ["x"])
    with pytest.raises(Exception, match="model.* cannot be set here"):
        load_frontend_yaml(f, ["model.head.output_dim=3"])
