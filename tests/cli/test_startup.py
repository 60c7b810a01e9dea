"""``cmer --help`` answers without importing any subcommand module (nor torch), and each subcommand's ``--help``
without torch: start-up stays interpreter-fast."""

from __future__ import annotations

from contrastive_mer.cli.main import SUBCOMMANDS
from tests.conftest import cli_in_fresh_interpreter

HEAVY = ("torch", "lightning", "pytorch_lightning", "torchmetrics")


def test_top_level_help_imports_no_subcommand_and_no_torch() -> None:
    reports, stdout = cli_in_fresh_interpreter(
        [["--help"]], "sorted(m for m in sys.modules if m == 'torch' or m.startswith('contrastive_mer.cli.') "
                      "and m.rsplit('.', 1)[1] not in ('main', '_common'))")
    assert reports == ["[]"]
    for name, help_text in SUBCOMMANDS.items():
        assert name in stdout and help_text.split()[0] in stdout


def test_every_subcommand_help_imports_no_torch() -> None:
    """Each ``cmer NAME --help`` imports only that subcommand's module, and none of them pulls in torch at top
    level (issue 15 item 4: every subcommand's help in under 1 s; torch alone takes longer to import)."""
    reports, _ = cli_in_fresh_interpreter([[name, "--help"] for name in SUBCOMMANDS],
                                          f"sorted(m for m in {HEAVY!r} if m in sys.modules)")
    assert reports == ["[]"] * len(SUBCOMMANDS), dict(zip(SUBCOMMANDS, reports))
