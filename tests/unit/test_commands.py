"""The command line's table of commands: each command's module is imported only when it runs."""

from __future__ import annotations

import subprocess
import sys

from memwarden import commands


def test_each_commands_listed_help_is_its_modules_help() -> None:
    """The one-line help listed without importing a command is the one its module declares."""
    for name, help_text in commands._COMMANDS.items():
        assert help_text == commands.command_module(name).HELP, name


def test_run_imports_no_other_command() -> None:
    """Parsing `memwarden run ...` imports the run command's module and none of the others."""
    code = (
        "import sys; from memwarden import commands; commands.build_parser(only='run')"
        ".parse_args(['run', 'x.py']); "
        "print(sorted(m for m in sys.modules if m.startswith('memwarden.commands.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['memwarden.commands.run']", out
