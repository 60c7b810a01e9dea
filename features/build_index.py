"""Build a FAISS index over a feature store: ``python features/build_index.py --features feats.h5 --out feats.faiss``.

A thin wrapper around ``cmer index`` (see ``contrastive_mer/cli/index.py`` for the options).
"""

import sys

from contrastive_mer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["index", *sys.argv[1:]]))
