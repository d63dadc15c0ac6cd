"""The ``sealpost`` command line (typer + rich)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.console import Console
from rich.table import Table

from sealpost.config import Settings
from sealpost.errors import SealpostError
from sealpost.logging import configure_logging

app = typer.Typer(
    help="Sealpost: certified communications with verifiable evidence.", no_args_is_help=True
)
keys_app = typer.Typer(help="Keys and certificates.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="The evidence ledger.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(tenant_app, name="tenant")
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: SEALPOST_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SEALPOST_API_PORT.")] = None,
) -> None:
    """Run Sealpost in the foreground: keys and schema on first start, the API and sequencer."""
    import uvicorn

    from sealpost.api.app import create_app
    from sealpost.app import build

    settings = _settings()
    sp = build(settings)  # keys and schema on first start; the sequencer seals leftovers
    bind_host, bind_port = host or settings.api_host, port or settings.api_port
    out.print(
        f"Sealpost {settings.ledger_origin}: API on http://{bind_host}:{bind_port} "
        f"(OpenAPI at /openapi.json, TSA at /tsa), database {sp.engine.url.render_as_string()}"
    )
    uvicorn.run(create_app(sp), host=bind_host, port=bind_port, log_level="warning")


@keys_app.command("init")
def keys_init(
    directory: Annotated[Path | None, typer.Option(help="Default: <data_dir>/keys.")] = None,
    organization: Annotated[str, typer.Option()] = "Sealpost",
    hostname: Annotated[list[str] | None, typer.Option(help="SMTP TLS host names.")] = None,
    key_type: Annotated[str, typer.Option(help="ec-p256 or rsa-3072.")] = "ec-p256",
    force: Annotated[bool, typer.Option(help="Replace existing keys.")] = False,
) -> None:
    """Create a local CA, a seal, a TSA and an SMTP TLS certificate (embedded default)."""
    from sealpost.pki.keys import init_keys

    target = directory or _settings().resolved_keys_dir
    if key_type not in ("ec-p256", "rsa-3072"):
        raise _fail("--key-type is ec-p256 or rsa-3072", 2)
    try:
        files = init_keys(
            target,
            organization=organization,
            hostnames=tuple(hostname or ["localhost"]),
            key_type=key_type,  # type: ignore[arg-type]
            force=force,
        )
    except SealpostError as exc:
        raise _fail(exc.message) from None
    out.print(f"keys written to {target} (private keys mode 0600); root CA: {files.root_ca_cert}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (``serve`` does it on start too)."""
    from sealpost.app import Sealpost

    sp = Sealpost(_settings())
    sp.migrate()
    out.print(f"schema up to date on {sp.engine.url.render_as_string()}")


@tenant_app.command("create")
def tenant_create(
    name: str, label: Annotated[str, typer.Option(help="Label of the first API key.")] = "default"
) -> None:
    """Create a tenant and print its first API key (shown once, stored hashed)."""
    from sealpost.app import build

    sp = build(_settings())
    try:
        tenant = sp.tenants.create(name)
    except SealpostError as exc:
        raise _fail(exc.message) from None
    key = sp.tenants.issue_api_key(tenant.id, label)
    out.print(f"tenant {tenant.name} created, id {tenant.id}")
    out.print("API key (shown once, keep it safe):")
    print(key.secret)


@tenant_app.command("api-key")
def tenant_api_key(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    label: Annotated[str, typer.Option()] = "",
) -> None:
    """Issue one more API key for a tenant."""
    from sealpost.app import build

    sp = build(_settings())
    try:
        found = sp.tenants.get(tenant)
    except SealpostError as exc:
        raise _fail(exc.message) from None
    print(sp.tenants.issue_api_key(found.id, label).secret)


@tenant_app.command("list")
def tenant_list() -> None:
    """List tenants."""
    from sealpost.app import build

    table = Table("id", "name")
    for tenant in build(_settings()).tenants.list():
        table.add_row(tenant.id, tenant.name)
    out.print(table)


@ledger_app.command("status")
def ledger_status() -> None:
    """Tree size, pending records and the latest head."""
    from sealpost.app import build

    sp = build(_settings())
    head = sp.log_storage.head()
    out.print(f"pending records: {sp.log_storage.pending_count()}")
    out.print(head.checkpoint.to_text() if head else "no tree head yet", end="")


@ledger_app.command("seal")
def ledger_seal() -> None:
    """Seal every pending record now (normally the running service does it)."""
    from sealpost.app import build

    heads = build(_settings()).sequencer.seal_all()
    out.print(
        f"sealed {len(heads)} batch(es)" + (f"; tree size {heads[-1].tree_size}" if heads else "")
    )


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="An evidence bundle (.json).")],
    trust: Annotated[
        list[Path] | None, typer.Option(help="Root certificate(s) to pin (PEM).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Verify an evidence bundle offline; exit 0 if valid, 1 if not, 2 if unreadable."""
    from sealpost.ledger.verify import verify_bundle

    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        roots = [x509.load_pem_x509_certificate(p.read_bytes()) for p in trust or []]
    except (OSError, ValueError) as exc:
        raise _fail(str(exc), 2) from None
    try:
        report = verify_bundle(data, trust_roots=roots)
    except SealpostError as exc:
        if as_json:
            print(json.dumps({"valid": False, "error": exc.message}))
        raise _fail(f"cannot read the bundle: {exc.message}", 2) from None
    if as_json:
        print(
            json.dumps(
                {
                    "valid": report.ok,
                    "statement": report.statement(),
                    "checks": [c.__dict__ for c in report.checks],
                },
                indent=2,
            )
        )
        raise typer.Exit(0 if report.ok else 1)
    table = Table("check", "field", "result")
    for check in report.checks:
        mark = "[green]ok[/]" if check.ok else "[bold red]FAILED[/]"
        table.add_row(check.name, check.field, f"{mark} {check.detail}")
    out.print(table)
    verdict = "[bold green]VALID[/]" if report.ok else "[bold red]NOT VALID[/]"
    out.print(f"{verdict}: {report.statement()}")
    raise typer.Exit(0 if report.ok else 1)


def main() -> None:
    app()
