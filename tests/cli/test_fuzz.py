"""Seeded fuzzing of the files ``cmer`` reads (issue 13): mutated ``.npy`` query files, index sidecars, FAISS files,
feature stores (whole files, single bits of their metadata, swapped chunks), manifests, checkpoints and media
(copies of ``../shared/data`` clips when present, else synthetic WAVs) go through the CLI. Every run must end in
exit 0 with the clean run's result (or one a numpy reference agrees with) or in one ``cmer X: error: ...`` line
with exit 2: never a traceback, a crash, a hang or a silently wrong store. The cases run in a child process
(``tests/fixtures/fuzz_cases.py``) so that a crash or C code fails the case it happened in; each case is
reproducible from its seed, family and number.

``CMER_FUZZ_ITERS=N`` runs N cases per family (default: a few, about 100 s in all on 2 busy cores);
``CMER_FUZZ_SEED`` picks the seed (default 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

#: cases per family by default: the cheap families more, the extraction families fewer
DEFAULT_ITERS = {"npy": 12, "sidecar": 8, "index": 6, "store": 10, "manifest": 3, "checkpoint": 3, "media": 1,
                 "meta": 12, "chunks": 4}
#: a case (or the setup) taking longer than this is a hang
HANG_SECONDS = 240


def test_fuzzed_inputs_give_a_result_or_one_line(tmp_path: Path) -> None:
    n = os.environ.get("CMER_FUZZ_ITERS")
    iters = {fam: int(n) for fam in DEFAULT_ITERS} if n else dict(DEFAULT_ITERS)
    seed = int(os.environ.get("CMER_FUZZ_SEED", "0"))
    work = tmp_path / "fuzz"
    argv = [sys.executable, "-m", "tests.fixtures.fuzz_cases", str(work), str(seed), json.dumps(iters)]
    timeout = HANG_SECONDS + 20 * sum(iters.values())
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, code = "", "timeout"
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    started = [r for r in records if "start" in r]
    done = [r for r in records if "verdict" in r]
    repro = f"reproduce: python -m tests.fixtures.fuzz_cases /tmp/fuzz {seed} '{json.dumps(iters)}'"
    if code != 0:
        last = started[-1] if started else "the setup"
        pytest.fail(f"the fuzz worker ended with {code} during {last} (a crash or hang); {repro}\n{err[-3000:]}")
    failures = [r for r in done if r["verdict"].startswith("FAIL")]
    assert not failures, f"{repro}\n" + "\n".join(f"{r['family']} case {r['case']}: {r['verdict']}"
                                                   for r in failures)
    assert len(done) == sum(iters.values())
    by_family = {fam: [r["verdict"].split(":")[0] for r in done if r["family"] == fam] for fam in iters}
    # the mutations reach the checks: each family of sealed files refuses most of its cases
    for fam in ("sidecar", "index"):
        assert by_family[fam].count("refused") >= len(by_family[fam]) // 2, by_family[fam]
    # a chunk of the indexed view swapped with another dataset's passes Fletcher-32: the content digest refuses it
    assert by_family["chunks"] == ["refused"] * iters["chunks"], by_family["chunks"]


def test_npy_header_the_fuzzer_broke_is_one_line(tmp_path: Path) -> None:
    """Found by the fuzzer: a header whose dict is cut open made numpy's parser raise ``tokenize.TokenError``,
    which escaped as a traceback from ``cmer retrieve --vector-file``."""
    from contrastive_mer.data.safe_files import BadFileError, load_npy
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4, }"
    header += b" " * (117 - len(header)) + b"\n"
    path = tmp_path / "v.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(48))
    with pytest.raises(Exception) as numpy_error:
        np.load(path)
    assert type(numpy_error.value).__name__ == "TokenError"
    with pytest.raises(BadFileError, match="not a valid .npy file"):
        load_npy(path)


def test_a_path_with_a_nul_character_is_a_bad_file(tmp_path: Path) -> None:
    """Found by the fuzzer: a manifest path holding a NUL byte made ``os.open`` raise ValueError, which stopped
    the whole extraction ("embedded null byte"); now that clip is skipped with the reason."""
    from contrastive_mer.data.safe_files import BadFileError, load_npy, read_text
    from tests.fixtures.fuzz_cases import Setup, cli
    for read in (load_npy, read_text):
        with pytest.raises(BadFileError, match="holds a NUL character"):
            read(tmp_path / "a\x00b.npy")
    setup = Setup(tmp_path / "clean")
    setup.manifest.write_text(setup.manifest.read_text().replace("au03.npy", "au\x0003.npy"))
    out = tmp_path / "x.h5"
    code, err = cli("extract", "--checkpoint", str(setup.ckpt), "--out", str(out), "--no-progress")
    assert code == 0, err
    skipped = [json.loads(line) for line in out.with_name(out.name + ".skipped.jsonl").read_text().splitlines()]
    assert [s["id"] for s in skipped] == ["c03"] and "NUL character" in skipped[0]["reason"]
    rows = Setup.rows(out)
    assert "c03" not in rows and len(rows) == 9
    for i, row in rows.items():  # the other clips: what the clean corpus gives
        for key, value in row.items():
            np.testing.assert_allclose(value, setup.store_rows[i][key], atol=1e-6)
