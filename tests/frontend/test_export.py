"""Token export: HDF5 token store, MER-style .npy files (UTT [D], FRA [T, D]) and ``cmer frontend-export``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastive_mer.cli.main import main
from contrastive_mer.frontend import FUSED, FrontEnd, FrontEndConfig, export_npy, write_tokens
from contrastive_mer.frontend.export import KIND_SOURCES, KIND_TOKENS
from contrastive_mer.store.hdf5 import FeatureStore
from tests.fixtures.frontend import mixed_batch, save_checkpoint, write_store

H = 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpt = save_checkpoint(root / "enc.ckpt", seed=0)
    front = FrontEnd.from_checkpoint(ckpt, FrontEndConfig(llm_hidden=H, projector="linear", tokens_per_modality=0,
                                                          fused_tokens=2))
    batch = mixed_batch(6)
    with torch.no_grad():
        sources = front.sources(batch)
        tokens = front(sources)
    return root, ckpt, front, batch, sources, tokens


def load_npy_tree(folder):
    return {(p.parent.name, p.stem): np.load(p) for p in folder.rglob("*.npy")}


def test_token_store_and_npy_files_match(setup):
    root, ckpt, front, batch, sources, tokens = setup
    path = write_tokens(root / "tokens.h5", [sources], front, {s: H for s in front.source_dims},
                        labels={"emotion": None}, groups=["speaker"], attrs={"checkpoint_sha256": front.encoder_sha256})
    counts = export_npy(path, root / "npy", name="tiny")
    files = load_npy_tree(root / "npy")
    with FeatureStore(path) as store:
        assert store.attrs["kind"] == KIND_TOKENS
        assert list(store.ids) == batch.ids and store.modalities == list(front.source_dims)
        for s in front.source_dims:
            present = batch.present[s].numpy() if s != FUSED else np.ones(6, bool)
            np.testing.assert_array_equal(store.present(s), present)
            assert counts[f"tiny-{s}-UTT"] == counts[f"tiny-{s}-FRA"] == present.sum()
            for i, sid in enumerate(batch.ids):
                keys = [(f"tiny-{s}-{lv}", sid) for lv in ("UTT", "FRA")]
                if not present[i]:  # an absent source leaves no file (never a zero array posing as data)
                    assert not any(k in files for k in keys)
                    continue
                expected = tokens[s].row(i).numpy()  # one token per valid frame (tokens_per_modality=0)
                if s != FUSED:
                    assert len(expected) == int(sources.sources[s].lengths[i])
                fra, utt = files[keys[1]], files[keys[0]]
                np.testing.assert_array_equal(fra, store.sequence(s, i))
                np.testing.assert_array_equal(utt, store.features(s)[i])
                np.testing.assert_allclose(fra, expected, rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(utt, expected.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(store.labels("emotion"), batch.labels["emotion"].numpy())
    assert len(files) == sum(counts.values())


def test_source_export_holds_encoder_sequences_and_features(setup):
    root, ckpt, front, batch, sources, _ = setup
    path = write_tokens(root / "sources.h5", [sources], None, front.source_dims, level="sequence")
    export_npy(path, root / "npy_src")
    files = load_npy_tree(root / "npy_src")
    with FeatureStore(path) as store:
        assert store.attrs["kind"] == KIND_SOURCES
        for s, src in sources.sources.items():
            for i, sid in enumerate(batch.ids):
                if not bool(src.present[i]):
                    assert (f"cmer-{s}-FRA", sid) not in files
                    continue
                np.testing.assert_array_equal(files[(f"cmer-{s}-UTT", sid)], src.feature[i].numpy())
                frames = src.feature[i:i + 1] if s == FUSED else src.sequence[i, :int(src.lengths[i])]
                np.testing.assert_array_equal(files[(f"cmer-{s}-FRA", sid)], frames.numpy())


def test_export_npy_refuses_ids_that_are_not_file_names(setup, tmp_path):
    root, ckpt, front, batch, sources, _ = setup
    sources = type(sources)(["a/b", *sources.ids[1:]], sources.sources, sources.labels, sources.groups)
    path = write_tokens(tmp_path / "t.h5", [sources], None, front.source_dims)
    with pytest.raises(ValueError, match="'a/b'"):
        export_npy(path, tmp_path / "npy")


def test_cli_exports_tokens_that_match_the_front_end(setup, tmp_path, capsys):
    root, ckpt, front, batch, _, _ = setup
    projector = front.save(tmp_path / "front.safetensors")
    cfg = tmp_path / "fe.yaml"
    cfg.write_text("frontend:\n  llm_hidden: 24\ndata:\n  options:\n    num_speakers: 2\n")
    out, npy = tmp_path / "tokens.h5", tmp_path / "npy"
    argv = ["frontend-export", "--checkpoint", str(ckpt), "--config", str(cfg), "--out", str(out),
            "--npy-dir", str(npy), "--projector", str(projector), "--name", "fe", "--batch-size", "4",
            "--no-progress", "data.options.clips_per_speaker_emotion=1"]
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().out
    files = load_npy_tree(npy)
    with FeatureStore(out) as store:
        assert len(store) == 12 and store.attrs["checkpoint_sha256"] == front.encoder_sha256
        first = [store.index_of(i) for i in batch.ids]  # the fixture batch = the first 6 clips
        with torch.no_grad():
            direct = front(batch)
        for s in front.source_dims:
            for i, row in enumerate(first):
                if not bool(store.present(s)[row]):
                    continue
                expected = direct[s].row(i).numpy()
                np.testing.assert_allclose(store.sequence(s, row), expected, rtol=1e-4, atol=1e-5)
                np.testing.assert_array_equal(files[(f"fe-{s}-FRA", batch.ids[i])], store.sequence(s, row))
    # a projector trained on another encoder checkpoint is refused with a one-line error
    other = save_checkpoint(tmp_path / "other.ckpt", seed=1)
    argv_bad = [a if a != str(ckpt) else str(other) for a in argv] + ["--overwrite"]
    assert main(argv_bad) == 2
    assert "SHA-256" in capsys.readouterr().err


def test_cli_reads_sources_from_a_feature_store(setup, tmp_path):
    root, ckpt, front, batch, sources, _ = setup
    store_path = write_store(tmp_path / "feats.h5", front.encoder, batch, front.encoder_sha256)
    out = tmp_path / "from_store.h5"
    assert main(["frontend-export", "--checkpoint", str(ckpt), "--features", str(store_path), "--out", str(out),
                 "--no-progress", "--batch-size", "4", "frontend.level=sequence"]) == 0
    with FeatureStore(out) as tokens, FeatureStore(store_path) as feats:
        assert tokens.attrs["kind"] == KIND_SOURCES
        np.testing.assert_array_equal(tokens.labels("emotion"), feats.labels("emotion"))
        for m in feats.modalities:
            for i in np.flatnonzero(feats.present(m)):
                np.testing.assert_array_equal(tokens.sequence(m, i), feats.sequence(m, i))
        np.testing.assert_array_equal(tokens.features(FUSED), feats.fused("concat"))
    assert main(["frontend-export", "--checkpoint", str(save_checkpoint(tmp_path / "o.ckpt", seed=2)),
                 "--features", str(store_path), "--out", str(tmp_path / "x.h5"), "--no-progress"]) == 2


def test_export_reads_what_the_view_rule_reads(tmp_path):
    """export_npy writes exactly the usable rows of ``FeatureStore.view(source)`` and their vectors (before: it
    read features and present itself, writing a present row that holds NaN, which every other reader drops)."""
    from tests.store.test_hdf5 import make_rows
    from tests.store.test_hdf5 import write_store as write_rows

    rows = make_rows(9)
    rows["features"]["audio"][4, 1] = np.nan  # present, but no usable vector
    path = write_rows(tmp_path / "s.h5", rows)
    counts = export_npy(path, tmp_path / "npy", sources=["audio", "video"])
    files = load_npy_tree(tmp_path / "npy")
    with FeatureStore(path) as store:
        for s in ("audio", "video"):
            view = store.view(s)
            assert counts[f"cmer-{s}-UTT"] == len(view.rows)
            written = sorted(sid for (folder, sid) in files if folder == f"cmer-{s}-UTT")
            assert written == sorted(store.ids[view.rows])
            for row in view.rows:
                np.testing.assert_array_equal(files[(f"cmer-{s}-UTT", store.ids[row])], view.vectors[row])
        assert store.ids[4] not in {sid for (folder, sid) in files if folder.startswith("cmer-audio")}
