"""The fuzz cases of ``tests/test_fuzz.py``, run in a child process (a crash or hang in C code then fails one
case instead of the test session):

    python -m tests.fuzz_cases WORKDIR SEED '{"npy": 10, "store": 5}'   (family -> number of cases)

Families: ``npy`` (``cmer retrieve --vector-file``), ``sidecar`` and ``index`` (``cmer retrieve --query``),
``store`` (``cmer index``), ``manifest`` and ``checkpoint`` (``cmer extract``), ``media`` (mutated audio files,
copies of ``../shared/data`` clips when present, else synthetic WAVs, in one ``cmer extract``). Case ``i`` of a
family mutates the family's file with ``numpy.random.default_rng([SEED, family number, i])``: reproducible one
by one. Every command runs in-process through ``cmer``'s ``main``; each case prints one JSON line:
``{"family", "case", "verdict"}`` with verdict ``ok``, ``refused: <the line>`` (exit 2, one line) or ``FAIL: why``
(a traceback, several lines, another exit code, or exit 0 with a wrong result). ``start`` lines come first so
that the parent can name the case a crash or hang happened in.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil
import sys
import traceback
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np

FAMILIES = ("npy", "sidecar", "index", "store", "manifest", "checkpoint", "media")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N_CLIPS = 10


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flip 1-8 bytes, truncate, insert random bytes, zero a span, repeat a span."""
    buf = bytearray(data)
    n = len(buf)
    how = int(rng.integers(5)) if n else 2
    if how == 0:
        for pos in rng.integers(0, n, size=int(rng.integers(1, 9))):
            buf[pos] ^= int(rng.integers(1, 256))
    elif how == 1:
        del buf[int(rng.integers(0, n)):]
    elif how == 2:
        pos = int(rng.integers(0, n + 1))
        buf[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif how == 3:
        a = int(rng.integers(0, n))
        span = len(buf[a:a + int(rng.integers(1, 256))])
        buf[a:a + span] = bytes(span)
    else:
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(1, 256)))
        buf[b:b] = buf[a:b]
    return bytes(buf) if bytes(buf) != data else data + b"\0"


def cli(*argv: str) -> tuple[int | str, str]:
    """``cmer ARGV`` in-process: (exit code, stderr); an exception escaping ``main`` is code ``traceback``."""
    from contrastive_mer.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str = main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - what a user would see as a traceback
            code = "traceback"
            err.write(traceback.format_exc())
    return code, err.getvalue()


def verdict(command: str, code: int | str, err: str, check_ok: Callable[[], str | None]) -> str:
    """``ok`` / ``refused`` / ``FAIL: ...`` of one run; ``check_ok`` returns why an exit-0 result is wrong."""
    lines = err.strip().splitlines()
    if code == 2:
        if len(lines) != 1 or not lines[0].startswith(f"cmer {command}: error: "):
            return f"FAIL: exit 2 but stderr is not one error line: {err[-2000:]!r}"
        return "refused: " + lines[0][:300]
    if code != 0:
        return f"FAIL: exit {code}: {err[-3000:]!r}"
    if "Traceback" in err:
        return f"FAIL: exit 0 with a traceback: {err[-2000:]!r}"
    why = check_ok()
    return f"FAIL: exit 0 with a wrong result: {why}" if why else "ok"


# ----------------------------------------------------------------------------------------------- fixtures
def feature_overrides(manifest: Path, audio: bool) -> list[str]:
    out = ["data.dataset=manifest", f"data.options.path={manifest}", "data.val_fraction=0", "data.batch_size=4",
           "data.cache=none", "data.max_skip_fraction=1.0", "seed=0",
           "model.modalities.au.encoder=mlp", "model.modalities.au.encoder_args.input_dim=6",
           "model.modalities.au.encoder_args.hidden_dims=[8]", "model.modalities.au.encoder_args.output_dim=8",
           "model.modalities.pose.encoder=mlp", "model.modalities.pose.encoder_args.input_dim=4",
           "model.modalities.pose.encoder_args.hidden_dims=[8]", "model.modalities.pose.encoder_args.output_dim=8",
           "model.head.hidden_dim=8", "model.head.output_dim=4"]
    if audio:
        out += ["model.modalities.audio.encoder=tcn", "model.modalities.audio.encoder_args.n_mels=16",
                "model.modalities.audio.encoder_args.bottleneck=8", "model.modalities.audio.encoder_args.hidden=8",
                "model.modalities.audio.encoder_args.blocks=1", "model.modalities.audio.encoder_args.repeats=1",
                "model.modalities.audio.encoder_args.output_dim=8", "model.modalities.audio.preprocess.max_seconds=1.0"]
    return out


def synthetic_wav(path: Path, seconds: float, freq: float) -> None:
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def media_sources(n: int) -> list[Path]:
    """``n`` short real clips (RAVDESS wav/flac copies) when the shared data is here, else []."""
    found: list[Path] = []
    for pattern in ("ravdess/Actor_01/*.wav", "ravdess/Actor_02/*.flac"):
        found += sorted(SHARED_DATA.glob(pattern))
    return found[:n] if SHARED_DATA.is_dir() else []


def write_corpus(root: Path, audio_files: list[Path] | None = None) -> Path:
    """A manifest of N_CLIPS clips with two .npy feature modalities (and an audio column when given files)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    header = ["id", "speaker", "feat:au", "feat:pose"] + (["audio"] if audio_files else [])
    lines = [",".join(header)]
    for i in range(N_CLIPS):
        z = rng.normal(size=2).astype(np.float32)
        np.save(root / f"au{i:02d}.npy", np.concatenate([z, -z, z]))
        np.save(root / f"pose{i:02d}.npy", np.concatenate([z, z]))
        row = [f"c{i:02d}", f"s{i % 3}", f"au{i:02d}.npy", f"pose{i:02d}.npy"]
        if audio_files:
            row.append(audio_files[i % len(audio_files)].name)
        lines.append(",".join(row))
    manifest = root / "clips.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


class Setup:
    """The clean files every family mutates a copy of, and the results they give."""

    def __init__(self, work: Path) -> None:
        import torch

        from contrastive_mer.config import load_config, to_dict
        from contrastive_mer.module import PairwiseContrastiveModule

        self.work = work
        self.manifest = write_corpus(work / "corpus")
        self.overrides = feature_overrides(self.manifest, audio=False)
        torch.manual_seed(0)
        cfg = load_config(None, self.overrides)
        self.ckpt = work / "model.ckpt"
        torch.save({"state_dict": PairwiseContrastiveModule(cfg).state_dict(),
                    "hyper_parameters": {"config": to_dict(cfg)}}, self.ckpt)
        self.store = work / "feats.h5"
        code, err = cli("extract", "--checkpoint", str(self.ckpt), "--out", str(self.store), "--no-progress")
        assert code == 0, err
        self.index = work / "feats.faiss"
        code, err = cli("index", "--features", str(self.store), "--modality", "projections/au", "--out",
                        str(self.index), "--gpu", "no")
        assert code == 0, err
        self.query = self.retrieve(self.store, self.index)
        assert self.query is not None
        self.store_rows = self.rows(self.store)
        self.vectors = work / "v.npy"
        from contrastive_mer.store.hdf5 import FeatureStore
        with FeatureStore(self.store) as s:
            np.save(self.vectors, s.dataset("projections/au")[:3].astype(np.float32))

    def retrieve(self, store: Path, index: Path, *query: str) -> dict[str, Any] | None:
        out = self.work / "r.json"
        out.unlink(missing_ok=True)
        code, _ = cli("retrieve", "--features", str(store), "--index", str(index),
                      *(query or ("--query", "c01")), "--k", "5", "--json", str(out))
        return json.loads(out.read_text()) if code == 0 else None

    @staticmethod
    def rows(store: Path) -> dict[str, dict[str, np.ndarray]]:
        """id -> {dataset key: row} of every per-row dataset of a store."""
        from contrastive_mer.store.hdf5 import FeatureStore
        with FeatureStore(store) as s:
            keys = [f"{g}/{m}" for g in ("features", "projections") for m in s.modalities if f"{g}/{m}" in s]
            keys += [f"fused/{mode}" for mode in s.fused_modes()] + [f"present/{m}" for m in s.modalities]
            data = {k: s.dataset(k) for k in keys}
            return {i: {k: v[r] for k, v in data.items()} for r, i in enumerate(s.ids.tolist())}


def same_rows(got: dict[str, dict[str, np.ndarray]], want: dict[str, dict[str, np.ndarray]],
              ids: list[str] | None = None) -> str | None:
    for i in want if ids is None else ids:
        if i not in got:
            return f"id {i} missing"
        for k, v in want[i].items():
            if k not in got[i] or not np.allclose(got[i][k], v, atol=1e-5, equal_nan=True):
                return f"id {i}: {k} differs"
    return None


def same_query(got: dict[str, Any] | None, want: dict[str, Any]) -> str | None:
    if got is None:
        return "no result written"
    g = [[(h["id"], round(h["score"], 4)) for h in q["results"]] for q in got["queries"]]
    w = [[(h["id"], round(h["score"], 4)) for h in q["results"]] for q in want["queries"]]
    return None if g == w else f"neighbours {g} differ from the clean run's {w}"


# ------------------------------------------------------------------------------------------------- cases
def case_npy(s: Setup, rng: np.random.Generator, case: Path) -> str:
    from contrastive_mer.store.index import EmbeddingIndex
    bad = case / "v.npy"
    bad.write_bytes(mutate(s.vectors.read_bytes(), rng))
    out = case / "r.json"
    code, err = cli("retrieve", "--features", str(s.store), "--index", str(s.index), "--vector-file", str(bad),
                    "--k", "3", "--json", str(out))

    def check() -> str | None:
        try:
            ref = np.load(bad, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            return f"numpy cannot read the file ({e}) but cmer used it"
        ref = np.atleast_2d(ref).astype(np.float32)
        _, ids = EmbeddingIndex.load(s.index, use_gpu=False).search(ref, 3)
        got = [[h["id"] for h in q["results"]] for q in json.loads(out.read_text())["queries"]]
        return None if got == ids else f"neighbours {got} != numpy reference {ids}"
    return verdict("retrieve", code, err, check)


def case_sidecar(s: Setup, rng: np.random.Generator, case: Path, which: str = "sidecar") -> str:
    from contrastive_mer.store.index import sidecar_path
    idx = case / "feats.faiss"
    shutil.copyfile(s.index, idx)
    shutil.copyfile(sidecar_path(s.index), sidecar_path(idx))
    target = sidecar_path(idx) if which == "sidecar" else idx
    target.write_bytes(mutate(target.read_bytes(), rng))
    out = case / "r.json"
    code, err = cli("retrieve", "--features", str(s.store), "--index", str(idx), "--query", "c01", "--k", "5",
                    "--json", str(out))
    return verdict("retrieve", code, err, lambda: same_query(json.loads(out.read_text()), s.query))


def case_store(s: Setup, rng: np.random.Generator, case: Path) -> str:
    from contrastive_mer.store.index import EmbeddingIndex
    store, idx = case / "feats.h5", case / "feats.faiss"
    store.write_bytes(mutate(s.store.read_bytes(), rng))
    code, err = cli("index", "--features", str(store), "--modality", "projections/au", "--out", str(idx),
                    "--gpu", "no")

    def check() -> str | None:
        got, want = EmbeddingIndex.load(idx, use_gpu=False), EmbeddingIndex.load(s.index, use_gpu=False)
        if got.ids != want.ids:
            return f"indexed ids {got.ids} != {want.ids}"
        if not np.allclose(got.index.reconstruct_n(0, len(got)), want.index.reconstruct_n(0, len(want)), atol=1e-5):
            return "indexed vectors differ from the clean store's"
        return None
    return verdict("index", code, err, check)


def case_manifest(s: Setup, rng: np.random.Generator, case: Path) -> str:
    corpus = case / "corpus"
    shutil.copytree(s.manifest.parent, corpus)
    text = mutate(s.manifest.read_bytes(), rng)
    (corpus / "clips.csv").write_bytes(text)
    out = case / "f.h5"
    code, err = cli("extract", "--checkpoint", str(s.ckpt), "--out", str(out), "--no-progress",
                    f"data.options.path={corpus / 'clips.csv'}")

    def check() -> str | None:
        got = s.rows(out)
        lines = set(text.decode("utf-8", "replace").splitlines())
        original = {row[0]: ",".join(row) for row in csv.reader(s.manifest.read_text().splitlines()[1:])}
        unchanged = [i for i in got if original.get(i) in lines]
        if any(i not in text.decode("utf-8", "replace") for i in got):
            return "a stored id is not in the manifest"
        return same_rows(got, s.store_rows, unchanged)
    return verdict("extract", code, err, check)


def case_checkpoint(s: Setup, rng: np.random.Generator, case: Path) -> str:
    from contrastive_mer.store.hdf5 import FeatureStore
    ckpt, out = case / "model.ckpt", case / "f.h5"
    ckpt.write_bytes(mutate(s.ckpt.read_bytes(), rng))
    code, err = cli("extract", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress")

    def check() -> str | None:
        with FeatureStore(out) as st:
            recorded = st.attrs.get("checkpoint_sha256")
        real = hashlib.sha256(ckpt.read_bytes()).hexdigest()
        return None if recorded == real else f"store records checkpoint {recorded}, the file is {real}"
    return verdict("extract", code, err, check)


def case_media(s: Setup, rng: np.random.Generator, case: Path) -> str:
    """Mutated copies of a few audio files in one extraction (audio + features model); each clip is used or
    listed as skipped, never both, never lost, and every stored value is finite."""
    import torch

    from contrastive_mer.config import load_config, to_dict
    from contrastive_mer.module import PairwiseContrastiveModule
    from contrastive_mer.store.hdf5 import FeatureStore

    media = case / "media"
    media.mkdir()
    sources = media_sources(4)
    if not sources:
        for k in range(4):
            synthetic_wav(case / f"src{k}.wav", 0.8 + 0.2 * k, 220.0 * (k + 1))
            sources.append(case / f"src{k}.wav")
    files = []
    for k, src in enumerate(sources):
        dst = media / f"m{k}{src.suffix}"
        data = src.read_bytes()
        head = 4096 if k % 2 == 0 else 0  # every other file: mutate its header region, where parsers trip
        dst.write_bytes(mutate(data[:head], rng) + data[head:] if head else mutate(data, rng))
        files.append(dst)
    manifest = write_corpus(media, files)
    overrides = feature_overrides(manifest, audio=True)
    ckpt = case / "audio.ckpt"
    if not ckpt.exists():
        torch.manual_seed(0)
        cfg = load_config(None, overrides)
        torch.save({"state_dict": PairwiseContrastiveModule(cfg).state_dict(),
                    "hyper_parameters": {"config": to_dict(cfg)}}, ckpt)
    out = case / "f.h5"
    code, err = cli("extract", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress")

    def check() -> str | None:
        with FeatureStore(out) as st:
            ids = st.ids.tolist()
            bad = [k for k in st.expand_views() if not np.isfinite(st.dataset(k[1])).all()]
        skipped_file = out.with_name(out.name + ".skipped.jsonl")
        skipped = [json.loads(x)["id"] for x in skipped_file.read_text().splitlines()] if skipped_file.exists() else []
        if len(ids) != len(set(ids)) or set(ids) & set(skipped):
            return f"stored {ids}, skipped {skipped}: a clip twice"
        if set(ids) | set(skipped) != {f"c{i:02d}" for i in range(N_CLIPS)}:
            return f"stored {ids} and skipped {skipped} are not the corpus's {N_CLIPS} clips"
        return f"non-finite values in {bad}" if bad else None
    return verdict("extract", code, err, check)


CASES: dict[str, Callable[[Setup, np.random.Generator, Path], str]] = {
    "npy": case_npy, "sidecar": case_sidecar, "index": lambda s, r, c: case_sidecar(s, r, c, "index"),
    "store": case_store, "manifest": case_manifest, "checkpoint": case_checkpoint, "media": case_media}


def run(work: Path, seed: int, iters: dict[str, int]) -> None:
    setup = Setup(work / "clean")
    for fam, count in iters.items():
        for i in range(count):
            print(json.dumps({"start": fam, "case": i}), flush=True)
            case = work / f"{fam}-{i}"
            case.mkdir(parents=True)
            rng = np.random.default_rng([seed, FAMILIES.index(fam), i])
            try:
                result = CASES[fam](setup, rng, case)
            except Exception:  # noqa: BLE001 - a bug of the harness's checks shows as a failure too
                result = "FAIL: the check raised " + traceback.format_exc()[-2000:]
            print(json.dumps({"family": fam, "case": i, "verdict": result}), flush=True)
            shutil.rmtree(case, ignore_errors=True)


if __name__ == "__main__":
    work_dir, seed_arg, iters_arg = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    run(work_dir, seed_arg, iters_arg)
