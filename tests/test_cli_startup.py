"""``cmer --help`` answers without importing any subcommand module (nor torch): start-up stays interpreter-fast."""

from __future__ import annotations

import subprocess
import sys

from contrastive_mer.cli.main import SUBCOMMANDS


def test_top_level_help_imports_no_subcommand_and_no_torch() -> None:
    code = ("import sys\n"
            "from contrastive_mer.cli.main import main\n"
            "try:\n"
            "    main(['--help'])\n"
            "except SystemExit as exit:\n"
            "    assert exit.code == 0, exit.code\n"
            "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('contrastive_mer.cli.')\n"
            "               and m.rsplit('.', 1)[1] not in ('main', '_common'))\n"
            "print('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    for name, help_text in SUBCOMMANDS.items():
        assert name in proc.stdout and help_text.split()[0] in proc.stdout


def test_every_subcommand_help_imports_no_torch() -> None:
    """Each ``cmer NAME --help`` imports only that subcommand's module, and none of them pulls in torch at top
    level (issue 15 item 4: every subcommand's help in under 1 s; torch alone takes longer to import)."""
    code = ("import sys\n"
            "from contrastive_mer.cli.main import SUBCOMMANDS, main\n"
            "for name in SUBCOMMANDS:\n"
            "    try:\n"
            "        main([name, '--help'])\n"
            "    except SystemExit as exit:\n"
            "        assert exit.code == 0, (name, exit.code)\n"
            "    heavy = sorted(m for m in ('torch', 'lightning', 'torchmetrics') if m in sys.modules)\n"
            "    print('IMPORTED', name, heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("IMPORTED")]
    assert len(lines) == len(SUBCOMMANDS)
    assert all(line.endswith(" []") for line in lines), lines
