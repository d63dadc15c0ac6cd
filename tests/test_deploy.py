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


def _directives(unit: Path) -> dict[str, list[str]]:
    """Each directive of a unit file with its values, in order (a directive may repeat)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


UNIT_FILES = sorted((DEPLOY / "systemd").glob("*.service"))
ROLE_UNITS = [u for u in UNIT_FILES if u.name != "sealpost-migrate.service"]


def _words(directives: dict[str, list[str]], key: str) -> set[str]:
    return {word for value in directives.get(key, []) for word in value.split()}


@pytest.mark.parametrize("unit", UNIT_FILES, ids=[u.name for u in UNIT_FILES])
def test_each_unit_has_a_writable_tmp_and_data_dir(unit: Path) -> None:
    """``ProtectSystem=strict`` makes the whole file system read-only: without a private /tmp
    every ``tempfile`` (S3 uploads, archive exports, PDF text extraction, spools) fails."""
    directives = _directives(unit)
    assert directives.get("ProtectSystem") == ["strict"], "the hardening this test is about"
    assert directives.get("PrivateTmp") == ["true"], f"{unit.name}: /tmp is read-only"
    writable = _words(directives, "ReadWritePaths")
    data_dir = _example_env()["SEALPOST_DATA_DIR"]
    assert any(_under(data_dir, path) for path in writable), f"{unit.name}: {data_dir} read-only"


@pytest.mark.parametrize("unit", ROLE_UNITS, ids=[u.name for u in ROLE_UNITS])
def test_each_role_unit_starts_after_the_migration(unit: Path) -> None:
    """The roles start once ``sealpost-migrate`` has run, not racing it for the schema."""
    directives = _directives(unit)
    assert "sealpost-migrate.service" in _words(directives, "After"), unit.name
    pulled = _words(directives, "Wants") | _words(directives, "Requires")
    assert "sealpost-migrate.service" in pulled, unit.name


def _example_env() -> dict[str, str]:
    settings = {}
    for line in (DEPLOY / "sealpost.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            settings[name] = value
    return settings


def _under(path: str, directory: str) -> bool:
    return Path(path) == Path(directory) or Path(directory) in Path(path).parents


WRITABLE_SETTINGS = {"SEALPOST_DATA_DIR", "SEALPOST_BLOB_DIR", "SEALPOST_KEYS_DIR"}
"""Settings naming a place the processes write to; every other path is only read."""


def _example_paths() -> dict[str, str]:
    paths = {k: v for k, v in _example_env().items() if v.startswith("/")}
    assert "SEALPOST_SMTP_TLS_CERTIFICATE" in paths, "the pattern is wrong"
    return paths


def test_the_example_starts_the_smtp_role_beside_an_operators_seal() -> None:
    """With an operator's seal and TSA no local keys (``smtp-tls.pem``) are made: the example
    must name the SMTP TLS certificate and key, else ``serve --role smtp`` cannot start."""
    example = _example_env()
    if example.get("SEALPOST_TSA_URL") and (
        example.get("SEALPOST_SEAL_PKCS12") or example.get("SEALPOST_SEAL_KEY")
    ):
        assert example.get("SEALPOST_SMTP_TLS_CERTIFICATE"), "smtp: no TLS certificate"
        assert example.get("SEALPOST_SMTP_TLS_KEY"), "smtp: no TLS key"


def test_the_example_marks_its_placeholders() -> None:
    """A value the operator must provide says so (CHANGE-ME), not a plausible URL."""
    example = _example_env()
    assert "CHANGE-ME" in example["SEALPOST_TSA_URL"]
    assert "CHANGE-ME" in example["SEALPOST_AMQP_URL"]


@pytest.mark.parametrize("unit", ROLE_UNITS, ids=[u.name for u in ROLE_UNITS])
def test_each_path_of_the_example_is_available_to_the_units(unit: Path) -> None:
    """``ProtectSystem=strict`` leaves everything readable and only ``ReadWritePaths``
    writable; ``PrivateTmp`` hides the host's /tmp; ``ProtectHome`` hides /home and /root."""
    directives = _directives(unit)
    writable = _words(directives, "ReadWritePaths")
    hidden = ["/tmp", "/var/tmp"]
    if directives.get("ProtectHome", ["false"])[-1] != "false":
        hidden += ["/home", "/root", "/run/user"]
    for name, path in _example_paths().items():
        assert not any(_under(path, h) for h in hidden), f"{unit.name}: {name}={path} hidden"
        if name in WRITABLE_SETTINGS:
            assert any(_under(path, w) for w in writable), f"{unit.name}: {name} read-only"


def _compose_sealpost_services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("env_file") == "sealpost.env"
    }


COMPOSE_SEALPOST = _compose_sealpost_services()


@pytest.mark.parametrize("name", sorted(COMPOSE_SEALPOST))
def test_each_path_of_the_example_is_mounted_in_compose(name: str) -> None:
    """A path sealpost.env names exists in the container only on a volume or bind mount (the
    image has no /etc/sealpost); a place written to is not mounted read-only."""
    service = COMPOSE_SEALPOST[name]
    mounts = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        mounts[parts[1]] = "ro" in parts[2:]
    overrides = service.get("environment", {})
    for setting, path in _example_paths().items():
        path = overrides.get(setting, path)
        found = [read_only for target, read_only in mounts.items() if _under(path, target)]
        assert found, f"{name}: {setting}={path} is not mounted"
        if setting in WRITABLE_SETTINGS:
            assert not any(found), f"{name}: {setting}={path} is mounted read-only"
