"""``cmer backbone-export``: a tiny random wav2vec 2.0's layers per clip in MERTools' layout, equal to
transformers' own ``output_hidden_states`` (FRA) and their mean over frames (UTT); resumable, computed once
through the ``hf_audio_cached`` disk cache; bad requests are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive_mer.cli import main as cli_main
from tests.encoders.hf_tiny import save_tiny_audio


def _overrides(folder: Path, cache: Path | None) -> list[str]:
    return [
        "data.options.num_speakers=2", "data.options.speakers=null", "data.options.clips_per_speaker_emotion=1",
        "data.options.num_emotions=2", "data.options.modalities=[audio,text]",
        *(["data.cache=disk", f"data.cache_dir={cache}"] if cache else ["data.cache=none"]),
        "model.modalities={speech: {encoder: mlp}, text: {encoder: hf_text}}",
        "model.modalities.text.encoder_args={output_dim: 8, bert_hidden: 32, bert_layers: 1, bert_heads: 2, "
        "bert_intermediate: 32}",
        "model.modalities.speech.source=audio", "model.modalities.speech.input=hf_audio_cached",
        "model.modalities.speech.encoder_args.input_dim=32", f"model.modalities.speech.preprocess.model_path={folder}",
        "model.modalities.speech.preprocess.max_seconds=0.5", "model.modalities.speech.preprocess.layers=all",
    ]


def _reference(folder: Path, waves: list[np.ndarray]) -> list[tuple[torch.Tensor, ...]]:
    """transformers' own hidden states of each clip alone: its feature extractor, then the model."""
    import transformers as tf

    extractor = tf.Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
    model = tf.Wav2Vec2Model.from_pretrained(str(folder)).eval()
    out = []
    for wave in waves:
        values = extractor(wave, sampling_rate=16000, return_tensors="pt").input_values
        with torch.no_grad():
            out.append(tuple(h[0] for h in model(values, output_hidden_states=True).hidden_states))
    return out


def test_layers_equal_transformers_hidden_states_and_export_resumes(tmp_path, monkeypatch):
    from contrastive_mer.data.datamodule import build_corpus
    from contrastive_mer.data.kinds.hf_audio_cached import HFAudioCached
    from contrastive_mer.experiment import load_config
    from contrastive_mer.extract.backbone_layers import export_backbone_layers

    folder = save_tiny_audio("wav2vec2_layer", tmp_path / "w2v", conv_kernel=(16, 20), conv_stride=(16, 20))
    cfg = load_config(None, _overrides(folder, tmp_path / "cache"))
    out = tmp_path / "feats"
    result = export_backbone_layers(cfg, "speech", out, layers=[0, -1], name="tiny")
    assert result.layers == [0, 2] and (result.written, result.complete, result.failed) == (4, 0, [])
    assert sorted(p.name for p in out.iterdir()) == ["tiny-L0-FRA", "tiny-L0-UTT", "tiny-L2-FRA", "tiny-L2-UTT"]
    adapter = build_corpus(cfg)
    records = adapter.records()
    waves = [np.asarray(adapter.load(r, ["audio"]).inputs["audio"], dtype=np.float32)[:8000] for r in records]
    for record, hidden in zip(records, _reference(folder, waves)):
        for k in (0, 2):
            fra = np.load(out / f"tiny-L{k}-FRA" / f"{record.id}.npy")
            utt = np.load(out / f"tiny-L{k}-UTT" / f"{record.id}.npy")
            assert fra.dtype == np.float32 and fra.shape == tuple(hidden[k].shape) and fra.shape[0] > 10
            np.testing.assert_allclose(fra, hidden[k].numpy(), atol=1e-4, rtol=1e-4)
            np.testing.assert_allclose(utt, hidden[k].numpy().mean(0), atol=1e-4, rtol=1e-4)
    assert not list(out.rglob(".*.tmp*"))  # temporary files were moved into place

    def no_backbone(self, wave):
        raise AssertionError("the backbone ran although the clip is complete or cached")

    monkeypatch.setattr(HFAudioCached, "features", no_backbone)
    again = export_backbone_layers(cfg, "speech", out, layers=[0, -1], name="tiny")
    assert (again.written, again.complete) == (0, 4)  # complete clips are not computed again
    lost = out / "tiny-L2-FRA" / f"{adapter.records()[1].id}.npy"
    before = np.load(lost)
    lost.unlink()
    third = export_backbone_layers(cfg, "speech", out, layers=[0, -1], name="tiny")
    assert (third.written, third.complete) == (1, 3)  # from the disk cache: the backbone does not run
    np.testing.assert_array_equal(np.load(lost), before)


def test_cli_writes_the_layout_and_refuses_bad_requests_in_one_line(tmp_path, capsys):
    folder = save_tiny_audio("wav2vec2_layer", tmp_path / "w2v", conv_kernel=(16, 20), conv_stride=(16, 20))
    base = _overrides(folder, None)
    out = tmp_path / "feats"
    argv = ["backbone-export", "--modality", "speech", "--layers", "1", "--levels", "UTT", "--output", str(out),
            "--device", "cpu", *base]
    assert cli_main.main(argv) == 0
    text = capsys.readouterr().out
    assert "layers [1]: 4 clip(s) written" in text
    files = sorted((out / "w2v-L1-UTT").glob("*.npy"))
    assert len(files) == 4 and np.load(files[0]).shape == (32,) and not (out / "w2v-L1-FRA").exists()
    assert cli_main.main(argv) == 0 and "0 clip(s) written, 4 already complete" in capsys.readouterr().out
    for bad, message in ((["--modality", "text"], "model.modalities.text.input is 'tokens'"),
                         (["--modality", "face"], "model.modalities.face: no such modality"),
                         (["--modality", "speech", "--layers", "1,x"], "--layers: expected comma-separated int"),
                         (["--modality", "speech", "--layers", "7"], "preprocess.layers: layer 7 out of range"),
                         (["--modality", "speech", "--levels", "UTT,ALL"], "levels: expected UTT and/or FRA")):
        assert cli_main.main(["backbone-export", "--output", str(tmp_path / "x"), *bad, *base]) == 2, bad
        err = capsys.readouterr().err.splitlines()[-1]  # after transformers' own "Loading weights" bar
        assert err.startswith("cmer backbone-export: error: ") and message in err, err


@pytest.mark.parametrize("bad", ["", "..", "a/b"])
def test_an_id_that_is_no_file_name_is_refused(bad):
    from contrastive_mer.extract.backbone_layers import file_name

    with pytest.raises(ValueError, match="cannot be a file name"):
        file_name(bad)
    assert file_name("clip_1") == "clip_1.npy"
