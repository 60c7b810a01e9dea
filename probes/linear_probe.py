"""Linear probe on stored features: ``cmer probe --probe linear`` with the same options, e.g.

    python probes/linear_probe.py --train a.h5 --test b.h5 --label emotion
"""

import sys

from contrastive_mer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["probe", "--probe", "linear", *sys.argv[1:]]))
