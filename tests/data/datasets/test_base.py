"""Adapter options: every adapter's typed options dataclass, checked at config time like ``encoder_args``; the
shared option names; scan-time skip entries; the registry listing every adapter module."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import contrastive_mer.data.datasets as datasets
from contrastive_mer.cli.main import main
from contrastive_mer.config import ConfigError
from contrastive_mer.data.datasets import (
    MediaCorpus,
    MediaCorpusOptions,
    SkipEntry,
    adapter_class,
    adapter_names,
    adapter_options,
    build_adapter,
)
from contrastive_mer.data.datasets.base import RENAMED_OPTIONS, options_from_signature
from contrastive_mer.data.datasets.ravdess import RavdessAdapter, RavdessOptions
from contrastive_mer.data.datasets.synthetic import SyntheticConfig
from contrastive_mer.experiment import load_config
from tests.conftest import DEMO

RAVDESS_YAML = DEMO.parent / "ravdess.yaml"
BUILTIN = ("cremad", "iemocap", "manifest", "meld", "mosei", "mosi", "ravdess", "synthetic")


# ------------------------------------------------------------------------------------------------- CLI / config
@pytest.mark.parametrize("config, override, fragments", [
    (DEMO, "data.options.num_speaker=3", ("'num_speaker'", "'synthetic'")),
    (RAVDESS_YAML, "data.options.frame_sise=64", ("'frame_sise'", "'ravdess'")),
    (RAVDESS_YAML, "data.options.actors=[1,2]", ("'actors'", "'ravdess'", "renamed to 'speakers'")),
    (RAVDESS_YAML, "data.options.max_seconds=long", ("'max_seconds'", "'ravdess'", "Float")),
])
def test_misspelt_or_mistyped_data_option_is_one_line_exit_2(config, override, fragments, tmp_path, capsys):
    code = main(["pretrain", "--config", str(config), "--output", str(tmp_path / "run"), override])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("cmer pretrain: error: data.options: ")
    assert all(f in lines[0] for f in fragments), lines[0]
    assert not (tmp_path / "run").exists()  # rejected before anything ran


def test_config_checks_option_values_too():
    with pytest.raises(ConfigError, match=r"data.options: dataset 'ravdess' option 'au_normalize': .*'global'"):
        load_config(RAVDESS_YAML, ["data.options.au_normalize=global"])
    with pytest.raises(ConfigError, match=r"data.options: .*'synthetic'.*speakers"):
        load_config(DEMO, ["data.options.speakers=[0,99]"])
    cfg = load_config(RAVDESS_YAML, ["data.options.au_normalize=actor", "data.options.speakers=[1,actor02]",
                                     "data.root=/corpora/ravdess"])
    assert cfg.data.options.au_normalize == "actor"


# ----------------------------------------------------------------------------------------------- typed options
@pytest.mark.parametrize("name", BUILTIN)
def test_defaults_come_from_the_declared_dataclass(name):
    cls = adapter_class(name).options_cls
    assert dataclasses.is_dataclass(cls)
    assert adapter_options(name, {}) == cls()


@pytest.mark.parametrize("name, speakers, fragment", [
    ("ravdess", ["bob"], "bad actor 'bob'"), ("iemocap", ["Ses1F"], "bad IEMOCAP speaker 'Ses1F'"),
])
def test_speakers_in_a_corpus_short_form_are_checked_with_the_options(name, speakers, fragment):
    with pytest.raises(ValueError, match=rf"dataset '{name}' option 'speakers': {fragment}"):
        adapter_options(name, {"speakers": speakers})
    cls = adapter_class(name).options_cls
    assert [cls.speaker_id(s) for s in ([3, "actor03"] if name == "ravdess" else [3, "ses03_m"])] == \
        (["actor03", "actor03"] if name == "ravdess" else ["Ses03", "Ses03_M"])


def test_values_are_converted_to_the_declared_types():
    opts = adapter_options("ravdess", {"speakers": [1, "actor02"], "frame_size": "64", "max_seconds": 4,
                                       "root": "/data/ravdess"})
    assert isinstance(opts, RavdessOptions)
    assert (opts.speakers, opts.frame_size, opts.max_seconds, opts.root) == (["1", "actor02"], 64, 4.0,
                                                                              "/data/ravdess")
    assert adapter_options("synthetic", {"speakers": [0, 2]}).speakers == [0, 2]


@pytest.mark.parametrize("name, values, fragment", [
    ("ravdess", {"frame_size": "big"}, "option 'frame_size'"),
    ("cremad", {"crop": ["face"]}, "option 'crop'"),
    ("meld", {"split": {"a": 1}}, "option 'split'"),
    ("iemocap", {"classes": "four"}, "option 'classes'"),
    ("manifest", {"strict": "maybe"}, "option 'strict'"),
    ("mosei", {"features": ["COVAREP.csd"]}, "option 'features'"),
    ("synthetic", {"num_speakers": 2.5}, "option 'num_speakers'"),
])
def test_wrong_type_names_the_option_and_the_dataset(name, values, fragment):
    with pytest.raises(ValueError, match=fragment) as err:
        adapter_options(name, values)
    assert f"dataset {name!r}" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", BUILTIN)
def test_unknown_option_is_named_with_the_known_ones(name):
    with pytest.raises(ValueError, match=rf"dataset '{name}' has no option 'colour'; known: ") as err:
        adapter_options(name, {"colour": "red"})
    known = str(err.value).split("known: ")[1].split(", ")
    assert known == [f.name for f in dataclasses.fields(adapter_class(name).options_cls)]
    with pytest.raises(ValueError, match="has no option 'colour'"):
        build_adapter(name, colour="red")  # the same check when built from Python


def test_option_names_are_shared():
    for name in BUILTIN:
        fields = {f.name for f in dataclasses.fields(adapter_class(name).options_cls)}
        assert not fields & set(RENAMED_OPTIONS), name  # no old spelling survives
        assert "speakers" in fields, name
        if issubclass(adapter_class(name), MediaCorpus) and name != "iemocap":
            assert {f.name for f in dataclasses.fields(MediaCorpusOptions)} <= fields, name
    assert "frame_size" in {f.name for f in dataclasses.fields(SyntheticConfig)}


def test_adapter_keeps_the_options_object(tmp_path):
    (tmp_path / "Actor_01").mkdir()
    options = RavdessOptions(root=str(tmp_path), modalities=["text"], frame_size=64, au_normalize="actor")
    adapter = RavdessAdapter(options=options)
    assert adapter.options is options and adapter.media.size == 64 and adapter.modalities == ("text",)
    same = build_adapter("ravdess", root=tmp_path, modalities=["text"], frame_size=64, au_normalize="actor")
    assert same.options == dataclasses.replace(options, root=tmp_path)
    with pytest.raises(ValueError, match="either an options object or keyword options"):
        RavdessAdapter(options=options, frame_size=32)


def test_options_derived_from_a_plain_constructor():
    class Plain:
        def __init__(self, n: int = 24, name: str = "x", flag=None) -> None:  # noqa: ANN001
            pass

    cls = options_from_signature(Plain)
    assert [(f.name, f.default) for f in dataclasses.fields(cls)] == [("n", 24), ("name", "x"), ("flag", None)]


def test_skip_entry_text():
    assert str(SkipEntry("a.csv", "missing id", 5)) == "a.csv:5: missing id"
    assert str(SkipEntry("l.csd", "bad interval", id="v[0]")) == "l.csd: v[0]: bad interval"


# ----------------------------------------------------------------------------------------------------- registry
def test_registry_lists_every_adapter_module():
    registering = set()
    for info in pkgutil.iter_modules(datasets.__path__):
        module = importlib.import_module(f"{datasets.__name__}.{info.name}")
        if re.search(r'register_adapter\("', Path(module.__file__).read_text()):
            registering.add(module.__name__)
    registered = {adapter_class(n).__module__ for n in adapter_names() if n in BUILTIN}
    assert registering == registered
    assert set(BUILTIN) <= set(adapter_names())


def test_a_broken_adapter_module_fails_the_import():
    code = ("import sys; sys.modules['contrastive_mer.data.datasets.meld'] = None\n"
            "import contrastive_mer.data.datasets")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "contrastive_mer.data.datasets.meld" in proc.stderr.splitlines()[-1]
