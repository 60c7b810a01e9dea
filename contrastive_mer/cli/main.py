"""``cmer`` entry point. Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so a slow import never delays another command.
Bad input exits with status 2 and a one-line reason."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

SUBCOMMANDS = {
    "pretrain": "train the encoders without labels (modality-pairwise InfoNCE)",
    "extract": "write features, projections and fused features of a dataset to an HDF5 store",
    "backbone-export": "a frozen speech backbone's layers per clip as MERTools-style UTT / FRA .npy files",
    "index": "build a FAISS index over stored embeddings",
    "project": "TensorBoard embedding-projector files (vectors + id/label/speaker) of stored features",
    "retrieve": "nearest neighbours of a stored clip or a vector; cross-modal retrieval metrics",
    "probe": "linear / kNN probes on stored features",
    "evaluate": "pretrained vs random-init vs raw-input baselines, group-disjoint K-fold probes",
    "demo": "the whole chain on the embedded synthetic corpus",
    "frontend-export": "export MLLM front-end tokens (HDF5 and MER-style .npy)",
    "instruction-rows": "write instruction rows (JSONL) for frontend-train from the labelled clips of a store",
    "frontend-train": "instruction-tune the front end's projectors (+ LoRA on the LLM) from a feature store",
    "frontend-generate": "free-text answers per clip from soft tokens and a local LLM (answers.jsonl, MER CSV)",
    "score-answers": "score free-text emotion answers: hit rate, accuracy / weighted F, sentiment, open-set F",
    "init-manifest": "write a manifest (CSV/JSONL) from a folder of media files and a label table",
}


def _module(name: str):
    return importlib.import_module(f"contrastive_mer.cli.{name.replace('-', '_')}")


def package_version() -> str:
    """The installed distribution's version (package metadata), else the source tree's ``__version__``;
    neither imports torch."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contrastive-mer")
    except PackageNotFoundError:
        from contrastive_mer import __version__

        return __version__


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmer", description="contrastive-mer: pairwise contrastive MER")
    parser.add_argument("--version", action="version", version=f"cmer {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            try:
                _module(name).add_arguments(p)
            except ModuleNotFoundError as err:
                if only == name:
                    raise
                p.description = f"{help_text} (unavailable: {err})"
    return parser


#: OSError numbers that describe the machine, not a bug: reported as one line (disk full, read-only, ...)
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
                       errno.ENOTDIR, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE, errno.EIO}


def _environment_error(err: BaseException) -> str | None:
    """The one-line message of an OSError caused by the machine (disk full, ...), or None for other errors."""
    if not isinstance(err, OSError):
        return None
    text = str(err)
    if err.errno in _ENVIRONMENT_ERRNOS:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or text}{where}"
    if "No space left on device" in text or "errno = 28" in text:  # HDF5 reports it inside its own message
        return f"No space left on device ({text})"
    return None


def one_line(message: object) -> str:
    """Whatever a library said, on one line."""
    return " ".join(str(message).split())


def parse_args(argv: list[str], command: str | None) -> argparse.Namespace:
    """Parse ``argv``; a subcommand's own arguments are parsed intermixed, so ``key=value`` overrides may sit
    before, between or after options (``cmer pretrain --config X a=b --output R c=d``)."""
    parser = build_parser(only=command or "")
    if command is None:
        return parser.parse_args(argv)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args = sub.choices[command].parse_intermixed_args(argv[1:])
    args.command = command
    return args


def main(argv: list[str] | None = None) -> int:
    from pickle import UnpicklingError

    from contrastive_mer.errors import Interrupted, UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    # no subcommand named (``cmer --help``, a typo): import none of their modules, only their one-line help shows
    args = parse_args(argv, command)
    try:
        return _module(args.command).run(args)
    except Interrupted as stopped:  # a signal: never exit 0; say where the work done so far is
        print(f"cmer {args.command}: {one_line(stopped)}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:
        print(f"cmer {args.command}: stopped by SIGINT", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, KeyError, ValueError, UnpicklingError, OSError) as err:
        message: object = _environment_error(err)
        if os.environ.get("CMER_DEBUG") or (isinstance(err, OSError) and not isinstance(err, FileNotFoundError)
                                            and message is None):
            raise
        if message is None:  # str(KeyError("msg")) is "'msg'": print the message itself
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, UnpicklingError):
            message = f"not a readable weights-only file ({message})"
        print(f"cmer {args.command}: error: {one_line(message)}", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
