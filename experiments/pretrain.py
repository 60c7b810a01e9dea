"""Thin wrapper: ``python experiments/pretrain.py --config experiments/demo.yaml`` == ``cmer pretrain ...``."""

import sys

from contrastive_mer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
