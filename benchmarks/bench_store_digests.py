"""What the store's content digests cost (issue 22 item 8): write a store of 20000 x 1024 float32 (78 MiB) with
the streaming writer, then open it and read ``features/a`` whole (checks the SHA-256 of name + rows) three
times; prints the write time, the best read time and SHA-256 alone over the same bytes.

    PYTHONPATH=. python benchmarks/bench_store_digests.py

Run it once with this tree and once with an older one on ``PYTHONPATH`` to compare.
"""

from __future__ import annotations

import hashlib
import tempfile
import time

import numpy as np

from contrastive_mer.store.hdf5 import FeatureStore, FeatureStoreWriter


def main(n: int = 20000, d: int = 1024) -> None:
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with FeatureStoreWriter(f"{tmp}/s.h5", ["a", "b"], {"a": d, "b": 4}, None, fsync=False,
                                part_rows=2048) as w:
            for s in range(0, n, 2048):
                e = min(n, s + 2048)
                w.append([f"c{i}" for i in range(s, e)], {}, {}, {"a": x[s:e], "b": x[s:e, :4]}, projections={},
                         present={"a": np.ones(e - s, bool), "b": np.ones(e - s, bool)}, fused={})
        write = time.perf_counter() - start
        reads = []
        for _ in range(3):
            start = time.perf_counter()
            with FeatureStore(f"{tmp}/s.h5") as store:
                store.features("a")
            reads.append(time.perf_counter() - start)
    start = time.perf_counter()
    hashlib.sha256(x.tobytes()).hexdigest()
    alone = time.perf_counter() - start
    print(f"{n}x{d} float32 ({x.nbytes / 2**20:.0f} MiB): write {write:.2f} s, open + whole read of features/a "
          f"best {min(reads):.3f} s, SHA-256 alone {alone:.3f} s")


if __name__ == "__main__":
    main()
