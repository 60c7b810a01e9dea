"""Issue 22 item 8: every byte a reader trusts is covered. Real bytes are changed in store files: the root
attributes (config, schema, provenance), label class names, group names, single bits anywhere outside the data
chunks, and whole chunks swapped within a dataset or between two datasets (each chunk still passes its
Fletcher-32 check). Each is a :class:`StoreIntegrityError` naming the file, or reads exactly as the clean store;
never an h5py ``RuntimeError`` traceback, never changed values."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from contrastive_mer.errors import UserError
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.store.integrity import StoreIntegrityError
from tests.store.test_hdf5 import make_rows, write_store


def reseal(f: h5py.File) -> None:
    """Recompute every content digest and the metadata digest of a store open for writing, as the writer would
    have written them (for tests that make a store hold given values, e.g. NaN, by editing it in place)."""
    from contrastive_mer.store._layout import CONTENT_ATTR, META_ATTR, content_digest, feed_content, metadata_digest

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            is_str = h5py.check_string_dtype(obj.dtype) is not None
            digest = content_digest(name)
            feed_content(digest, obj.asstr()[...] if is_str else obj[...], is_str)
            obj.attrs[CONTENT_ATTR] = digest.hexdigest()
    f.visititems(visit)
    f.attrs[META_ATTR] = metadata_digest(f)


def snapshot(path: Path) -> dict:
    """Everything a reader gets from a store: attributes, label and group names, class names, every dataset."""
    with FeatureStore(path) as s:
        out: dict = {"attrs": dict(s.attrs), "ids": s.ids.tolist(), "labels": s.label_names(),
                     "groups": s.group_names(), "modalities": s.modalities, "fused": s.fused_modes()}
        for name in s.label_names():
            out[f"class_names/{name}"] = s.class_names(name)
            out[f"labels/{name}"] = s.labels(name)
        for name in s.group_names():
            out[f"groups/{name}"] = s.groups(name).tolist()
        for m in s.modalities:
            out[f"features/{m}"], out[f"projections/{m}"], out[f"present/{m}"] = (
                s.features(m), s.projections(m), s.present(m))
            if s.has_sequences(m):
                out[f"sequences/{m}"] = [s.sequence(m, i) for i in range(len(s))]
        for mode in s.fused_modes():
            out[f"fused/{mode}"] = s.fused(mode)
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                return False
        elif isinstance(x, list) and x and isinstance(x[0], np.ndarray):
            if len(x) != len(y) or not all(np.array_equal(p, q) for p, q in zip(x, y)):
                return False
        elif x != y:
            return False
    return True


def chunk_spans(path: Path) -> dict[str, list[tuple[int, int]]]:
    """dataset -> (byte offset, size) of each of its chunks in the file."""
    spans: dict[str, list[tuple[int, int]]] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and obj.chunks:
                spans[name] = [(info.byte_offset, info.size)
                               for info in (obj.id.get_chunk_info(i) for i in range(obj.id.get_num_chunks()))]
        f.visititems(visit)
    return spans


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("clean") / "good.h5", make_rows(40), batch=8)


def _edit(clean: Path, tmp: Path, find: bytes, replace: bytes) -> Path:
    data = clean.read_bytes()
    assert data.count(find) >= 1, find
    bad = tmp / "bad.h5"
    bad.write_bytes(data.replace(find, replace))
    return bad


@pytest.mark.parametrize(("what", "find", "replace"), [
    ("config attribute", b"dim: 4", b"dim: 9"),
    ("provenance attribute", b"ab12", b"ab13"),
    ("class names", b"happy", b"hapPy"),
    ("schema attribute", b'"epochs": 3', b'"epochs": 7'),
])
def test_changed_root_attributes_and_class_names_are_refused(clean: Path, tmp_path: Path, what: str,
                                                             find: bytes, replace: bytes) -> None:
    """Was: the store opened and handed out the edited config, checkpoint hash or class names."""
    bad = _edit(clean, tmp_path, find, replace)
    with pytest.raises(StoreIntegrityError, match="metadata") as err:
        snapshot(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_a_renamed_group_or_label_is_refused(clean: Path, tmp_path: Path) -> None:
    """The group name ``speaker`` and the label name ``valence`` renamed in the file's bytes (same length): was
    read as a group ``speakes`` / a label ``valencf`` holding the other's values."""
    for find, replace in [(b"speaker", b"speakes"), (b"valence", b"valencf")]:
        bad = _edit(clean, tmp_path, find, replace)
        with pytest.raises(StoreIntegrityError) as err:
            snapshot(bad)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


def _swap(path: Path, a: tuple[int, int], b: tuple[int, int]) -> None:
    assert a[1] == b[1]
    data = bytearray(path.read_bytes())
    data[a[0]:a[0] + a[1]], data[b[0]:b[0] + b[1]] = data[b[0]:b[0] + b[1]], data[a[0]:a[0] + a[1]]
    path.write_bytes(bytes(data))


def test_chunks_swapped_within_or_between_datasets_are_refused(tmp_path: Path) -> None:
    """Two chunks of ``features/video`` swapped (rows reordered), and chunk 0 of ``projections/audio`` swapped
    with that of ``projections/video``: each chunk passes its Fletcher-32 check, so the old reader returned
    reordered or foreign rows with exit 0. Now the content digest (name + rows in order) refuses them."""
    rows = make_rows(2000)
    rows["features"]["video"] = np.random.default_rng(0).standard_normal((2000, 600)).astype(np.float32)
    store = write_store(tmp_path / "big.h5", rows, batch=500, feature_dims={"audio": 5, "video": 600})
    spans = chunk_spans(store)
    assert len(spans["features/video"]) >= 2
    cases = {"features/video": (spans["features/video"][0], spans["features/video"][1]),
             "projections/audio": (spans["projections/audio"][0], spans["projections/video"][0])}
    for key, (a, b) in cases.items():
        bad = tmp_path / "swapped.h5"
        shutil.copy(store, bad)
        _swap(bad, a, b)
        with FeatureStore(bad) as s:
            with h5py.File(bad, "r") as f:  # the chunks themselves are intact: h5py reads them without error
                f[key][...]
            with pytest.raises(StoreIntegrityError, match=f"dataset {key} does not match its SHA-256"):
                s.dataset(key)


def test_single_bit_flips_in_store_metadata_are_refused_or_harmless(clean: Path, tmp_path: Path) -> None:
    """Single-bit flips at seeded positions outside the data chunks (superblock, object headers, B-trees, heaps,
    attributes): each is a one-line UserError naming the file or reads exactly as the clean store (was: h5py
    RuntimeErrors, and edited attributes read as if nothing happened). 40 flips by default (about 8 s);
    ``CMER_METADATA_FLIPS=300`` for the run docs/reliability.md reports."""
    want = snapshot(clean)
    data = clean.read_bytes()
    in_chunks = np.zeros(len(data), bool)
    for spans in chunk_spans(clean).values():
        for off, size in spans:
            in_chunks[off:off + size] = True
    positions = np.flatnonzero(~in_chunks)
    rng = np.random.default_rng(22)
    verdicts = {"refused": 0, "harmless": 0}
    bad = tmp_path / "flip.h5"
    for pos in rng.choice(positions, size=int(os.environ.get("CMER_METADATA_FLIPS", "40")), replace=False):
        buf = bytearray(data)
        buf[pos] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(buf))
        try:
            got = snapshot(bad)
        except UserError as e:
            assert str(bad) in str(e) and "\n" not in str(e), (pos, e)
            verdicts["refused"] += 1
            continue
        except (FileNotFoundError, KeyError) as e:  # what the CLI also prints as one line
            verdicts["refused"] += 1
            assert "\n" not in str(e), (pos, e)
            continue
        assert same(got, want), f"a flip at byte {pos} changed what the store reads as"
        verdicts["harmless"] += 1
    print(verdicts)
    assert verdicts["refused"] > 0
