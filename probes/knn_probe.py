"""kNN probe on stored features: ``cmer probe --probe knn`` with the same options, e.g.

    python probes/knn_probe.py --train a.h5 --test b.h5 --label emotion
"""

import sys

from contrastive_mer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["probe", "--probe", "knn", *sys.argv[1:]]))
