"""``cmer init-manifest DIR [--labels TABLE.csv] --out manifest.csv``: a manifest from a folder of media files
(see :mod:`contrastive_mer.data.manifest_init` for the rules and docs/own_corpus.md for the format)."""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_out_file, comma_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR",
                        help="folder searched recursively for media: audio (.wav, .flac, .mp3, ...), video (.mp4, "
                             ".avi, ...), transcripts (.txt), feature arrays (.npy); a clip's id is its file name "
                             "without the suffix")
    add_out_file(parser, "the manifest (.csv, .tsv or .jsonl); the media paths in it are relative to it")
    parser.add_argument("--labels", metavar="TABLE", default=None,
                        help="CSV/TSV label table with a header row, one row per clip id (ids may keep their "
                             "media suffix); without it the manifest has no labels")
    parser.add_argument("--id-column", default="id", help="the label table's id column (default id)")
    parser.add_argument("--label-columns", default=None,
                        help="comma-separated label columns to copy (default: every column but the id and "
                             "speaker columns)")
    parser.add_argument("--speaker-column", default=None,
                        help="the label table's speaker column, written as the manifest's speaker column (used "
                             "for speaker-disjoint splits and folds)")
    parser.add_argument("--npy-modality", default=None, metavar="NAME",
                        help="modality name of every .npy file (column feat:NAME); default: the .npy's folder "
                             "name, 'features' at the top level")
    parser.add_argument("--keep-label-case", action="store_true",
                        help="keep the case of label values (default: folded, so 'Happy' and 'happy' are one "
                             "class; set data.options.keep_label_case=true to read the manifest the same way)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.data.manifest_init import init_manifest

    summary = init_manifest(args.folder, args.out, labels=args.labels, id_column=args.id_column,
                            label_columns=comma_list(args.label_columns, option="--label-columns"),
                            speaker_column=args.speaker_column, npy_modality=args.npy_modality,
                            overwrite=args.overwrite, keep_case=args.keep_label_case)
    print(summary.describe())
    return 0
