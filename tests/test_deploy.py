"""The deployment files under ``deploy/`` stay consistent with the CLI and the settings.

Every ``ExecStart`` of the systemd units and every ``command`` of the compose file is parsed by
the real ``sealpost`` command (click's own parser, as the shell would hand it the words): an
option the CLI does not know, a role it refuses or a command that does not exist fails here.
Every ``SEALPOST_*`` name the files set must be a real setting.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from sealpost import roles
from sealpost.cli import app
from sealpost.config import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
INSTANCE = {"%i": "8080"}
"""Values for the systemd specifiers the units use."""


def _units() -> dict[str, list[str]]:
    found = {}
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        (line,) = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
        command = line.removeprefix("ExecStart=")
        for specifier, value in INSTANCE.items():
            command = command.replace(specifier, value)
        found[unit.name] = shlex.split(command)
    return found


def _compose_commands() -> dict[str, list[str]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return {
        name: service["command"]
        for name, service in compose["services"].items()
        if "command" in service
    }


def _parse(words: list[str]) -> Any:
    """The words after the program name, parsed by the real command tree."""
    assert Path(words[0]).name == "sealpost", words
    group: Any = typer.main.get_command(app)
    context = group.make_context("sealpost", list(words[1:]), resilient_parsing=False)
    args = _rest(context)
    command: Any = group
    while hasattr(command, "resolve_command"):  # a group: descend
        name, sub, rest = command.resolve_command(context, args)
        assert sub is not None, f"unknown command {name}"
        command, context = sub, sub.make_context(name or "", rest, parent=context)
        args = _rest(context)
    assert not args, f"unexpected arguments {args}"
    return context


def _rest(context: Any) -> list[str]:
    """The words a group left for its subcommand (click's ``protected_args``, private in the
    click typer vendors)."""
    protected = getattr(context, "protected_args", None)
    if protected is None:
        protected = getattr(context, "_protected_args", [])
    return [*protected, *context.args]


UNITS = _units()
COMPOSE = _compose_commands()


def test_the_deploy_files_name_every_role() -> None:
    used = {
        context.params["role"]
        for words in [*UNITS.values(), *COMPOSE.values()]
        if (context := _parse(words)).info_name == "serve"
    }
    assert used == set(roles.ROLES) - {"all"}


@pytest.mark.parametrize("words", [*UNITS.values(), *COMPOSE.values()], ids=[*UNITS, *COMPOSE])
def test_each_command_is_accepted_by_the_cli(words: list[str]) -> None:
    context = _parse(words)
    if context.info_name == "serve":
        assert context.params["role"] in roles.ROLES, f"unknown role {context.params['role']}"


def test_an_unknown_option_or_command_is_caught() -> None:
    """The check can fail: a renamed option or a removed command is refused."""
    with pytest.raises(Exception, match="No such option"):
        _parse(["sealpost", "serve", "--roles", "api"])
    with pytest.raises(Exception, match="No such command"):
        _parse(["sealpost", "db", "migrate"])
    with pytest.raises(AssertionError, match="role"):
        test_each_command_is_accepted_by_the_cli(["sealpost", "serve", "--role", "workers"])


def test_every_setting_the_files_name_exists() -> None:
    known = {f"SEALPOST_{name.upper()}" for name in Settings.model_fields}
    texts = [p.read_text() for p in DEPLOY.rglob("*") if p.is_file()]
    named = {m for text in texts for m in re.findall(r"\bSEALPOST_[A-Z0-9_]+", text)}
    named -= {"SEALPOST_IMAGE"}  # the compose file's own variable: the image to run
    assert named, "no setting found: the pattern is wrong"
    assert named <= known, sorted(named - known)
