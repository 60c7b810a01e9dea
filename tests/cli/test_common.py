"""CLI conventions shared by every subcommand: comma lists, --out (a file) vs --output (a folder), --device,
one-line errors from main (KeyError messages unquoted)."""

from __future__ import annotations

import argparse

import pytest

from contrastive_mer.cli import main as cli_main
from contrastive_mer.cli._common import comma_list
from contrastive_mer.errors import UserError


def test_comma_list() -> None:
    assert comma_list(" a, b,,c ,") == ["a", "b", "c"]
    assert comma_list("") == [] and comma_list(None) is None
    assert comma_list("1,5, 10", int, "--ks") == [1, 5, 10]
    with pytest.raises(UserError, match=r"--ks: expected comma-separated int values, got '1,x'"):
        comma_list("1,x", int, "--ks")


def _options(command: str) -> dict[str, argparse.Action]:
    sub = cli_main.build_parser(only=command)._subparsers._group_actions[0]  # type: ignore[union-attr]
    return {s: a for a in sub.choices[command]._actions for s in a.option_strings}


def test_out_is_a_file_output_is_a_folder_and_device_defaults_agree() -> None:
    outs, outputs, devices = {}, {}, {}
    for command in cli_main.SUBCOMMANDS:
        opts = _options(command)
        if "--out" in opts:
            outs[command] = opts["--out"]
        if "--output" in opts:
            outputs[command] = opts["--output"]
        if "--device" in opts:
            devices[command] = opts["--device"].default
    assert {"extract", "frontend-export", "index"} <= set(outs)
    assert {"pretrain", "demo", "evaluate"} <= set(outputs)
    for command, action in outs.items():
        assert "folder" not in action.help and "director" not in action.help, command
    for command, action in outputs.items():
        assert action.metavar == "DIR" and "folder" in action.help, command
    assert set(devices) >= {"extract", "frontend-export"} and set(devices.values()) == {"auto"}


def test_main_prints_a_key_error_unquoted(monkeypatch, capsys) -> None:
    class Boom:
        @staticmethod
        def add_arguments(parser: argparse.ArgumentParser) -> None:
            pass

        @staticmethod
        def run(args: argparse.Namespace) -> int:
            raise KeyError("no view 'x' in store.h5")

    monkeypatch.setattr(cli_main, "_module", lambda name: Boom)
    assert cli_main.main(["demo"]) == 2
    assert capsys.readouterr().err == "cmer demo: error: no view 'x' in store.h5\n"
