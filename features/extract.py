"""Thin wrapper: ``python features/extract.py ...`` == ``cmer extract ...``."""

import sys

from contrastive_mer.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
