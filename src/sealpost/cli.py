"""The ``sealpost`` command line (typer + rich)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sealpost import roles
from sealpost.config import Settings
from sealpost.errors import SealpostError
from sealpost.logging import configure_logging, get_logger
from sealpost.pki import asn1

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
archive_app = typer.Typer(help="The mail archive.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(archive_app, name="archive")

out = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: object) -> str:
    """Text that may come from a file being verified, safe for the console: rich markup is
    escaped (``[/x]`` crashed the command, ``[link=...]`` forged a link) and control characters
    are written out as ``\\x1b`` (an ESC sequence could restyle or retitle the terminal)."""
    return escape(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text)))


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {_shown(message)}")
    return typer.Exit(code)


@contextmanager
def _reported() -> Iterator[None]:
    """An expected failure (unknown tenant, taken name, ...) is one red line and exit 1."""
    try:
        yield
    except SealpostError as exc:
        raise _fail(exc.message) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: SEALPOST_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SEALPOST_API_PORT.")] = None,
    role: Annotated[str, typer.Option(help=roles.help_text())] = "all",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="API processes sharing the port (roles api and all); default: "
            "SEALPOST_API_WORKERS.",
        ),
    ] = None,
    acceptor: Annotated[bool, typer.Option(hidden=True)] = False,
    api_worker: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run Sealpost in the foreground: keys and schema on first start, then its role.

    SIGTERM (or SIGINT) stops it gracefully: it stops accepting, lets work in flight finish
    within SEALPOST_SHUTDOWN_TIMEOUT_SECONDS, releases its leases and exits 0; a second signal
    or the bound passing forces the exit (code 1)."""
    import threading

    import uvicorn

    from sealpost.api.app import create_app
    from sealpost.app import Sealpost, build
    from sealpost.ops import start_ops_listener
    from sealpost.shutdown import Shutdown

    if role not in roles.ROLES:
        raise _fail(f"--role is one of {', '.join(roles.ROLES)}", 2)
    settings = _settings()
    if acceptor:  # one of several SMTP acceptor processes started by a parent `serve`
        role = "smtp"
        settings = settings.model_copy(update={"sequencer_enabled": False})
    if api_worker:  # one of several API processes started by a parent `serve`
        role = "api"
        settings = settings.model_copy(update={"sequencer_enabled": False})
    api_workers = 1 if api_worker else (workers or settings.api_workers)
    is_child = acceptor or api_worker
    settings = roles.for_role(settings, role)
    built: list[Sealpost] = []  # a SIGTERM during the start stops it as soon as it is up

    def release() -> None:
        for part in built:
            part.release_leases()

    shutdown = Shutdown(settings.shutdown_timeout_seconds, on_force=release)
    shutdown.install()
    with _reported():  # e.g. a note key that is not the log's: one red line, exit 1
        sp = build(settings)  # keys and schema on first start; the sequencer seals leftovers
    built.append(sp)
    try:
        sp.start_email()
    except OSError as exc:
        raise _fail(f"cannot start the SMTP listeners: {exc}") from None
    sp.start_events()
    sp.start_signing()
    sp.start_sms()
    sp.start_sequences()
    sp.start_archive()
    sp.start_background()
    # SEALPOST_OPS_PORT: /metrics, /readyz (the parent's: an API worker has none)
    ops = None if api_worker else start_ops_listener(sp, role, acceptor=acceptor)
    children = []
    if sp.smtp_ports and not acceptor:
        listening = ", ".join(f"{k} {settings.smtp_host}:{v}" for k, v in sp.smtp_ports.items())
        out.print(f"SMTP: {listening} ({settings.smtp_processes} acceptor processes)")
        children = _start_acceptors(settings.smtp_processes - 1)
    api: uvicorn.Server | None = None
    api_thread = None
    if role in ("all", "api"):
        # the fork server imports the PDF readers (seconds) while the API starts listening
        threading.Thread(target=sp.pdf_intake.start, name="pdf-intake-start", daemon=True).start()
        bind_host, bind_port = host or settings.api_host, port or settings.api_port
        out.print(
            f"Sealpost {settings.ledger_origin}: API on http://{bind_host}:{bind_port} "
            f"(OpenAPI at /openapi.json, TSA at /tsa), database {sp.engine.url.render_as_string()}"
        )
        api = uvicorn.Server(
            uvicorn.Config(
                create_app(sp, start_background=False),
                host=bind_host,
                port=bind_port,
                log_level="warning",
                timeout_graceful_shutdown=max(int(settings.shutdown_timeout_seconds) - 1, 1),
            )
        )
        sockets = None
        if api_workers > 1 or api_worker:
            try:
                sockets = [_shared_socket(bind_host, bind_port)]
            except OSError as exc:
                raise _fail(f"cannot listen on {bind_host}:{bind_port}: {exc}") from None
        # in a thread of its own, so that uvicorn leaves the signals to `shutdown`
        api_thread = threading.Thread(
            target=api.run, kwargs={"sockets": sockets}, name="sealpost-api", daemon=True
        )
        api_thread.start()
        if api_workers > 1:
            assert sockets is not None
            # the port the first process got (``--port 0``: the kernel's choice), for all
            bound_port = int(sockets[0].getsockname()[1])
            out.print(f"API: {api_workers} processes on {bind_host}:{bound_port}")
            children += _start_api_workers(api_workers - 1, bind_host, bound_port)
    if not is_child:
        out.print(f"Sealpost role {role} running; database {sp.engine.url.render_as_string()}")
    parent = os.getppid()
    while not shutdown.requested.wait(1.0):
        if is_child and os.getppid() != parent:
            shutdown.request("the parent process is gone")  # so are we
            break
        if api_thread is not None and not api_thread.is_alive():
            err.print("[bold red]error:[/] the API server stopped (see the log)")
            shutdown.request("the API server stopped")
            break
    assert shutdown.deadline is not None
    deadline = shutdown.deadline  # one bound for every step, from the signal on
    if api is not None:
        api.should_exit = True  # stops listening; requests in flight finish
    sp.stop_accepting()
    for child in children:  # they stop side by side with this process, by the same bound
        child.terminate()
    if api_thread is not None:
        api_thread.join(max(deadline - time.monotonic(), 0.0))
    sp.stop_background(max(deadline - time.monotonic(), 0.0))
    _wait_acceptors(children, deadline)
    if ops is not None:
        ops.close()
    stopping = settings.shutdown_timeout_seconds - (deadline - time.monotonic())
    code = 1 if api is not None and not api.started else 0
    # everything is stopped, released and closed: exit now, not after the interpreter's
    # teardown (seconds of joining idle executor threads, past the bound under load); past
    # the bound (or if the bound's forced exit is already under way) the exit code is 1
    shutdown.exit(
        code,
        last_words=lambda: get_logger(__name__).info(
            "serve.stopped", role=role, seconds=round(stopping, 2)
        ),
    )


def _start_acceptors(count: int) -> list[subprocess.Popen[bytes]]:
    """More SMTP acceptor processes on the same ports (SO_REUSEPORT), one core each."""
    command = [sys.executable, "-m", "sealpost", "serve", "--acceptor"]
    # a session of their own: a signal to the parent's process group (Ctrl-C, systemd's
    # KillMode=control-group) must not reach them besides the SIGTERM the parent forwards,
    # which would count as their second signal (forced exit); they exit when it dies
    return [subprocess.Popen(command, start_new_session=True) for _ in range(count)]


def _shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket that the other API processes bind too (SO_REUSEPORT): the kernel
    spreads the connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _start_api_workers(count: int, host: str, port: int) -> list[subprocess.Popen[bytes]]:
    """More API processes on the same port: one Python process serves about one core of
    requests (the GIL), so an API replica runs one per core (as ``_start_acceptors``)."""
    command = [sys.executable, "-m", "sealpost", "serve", "--api-worker"]
    command += ["--host", host, "--port", str(port)]
    return [subprocess.Popen(command, start_new_session=True) for _ in range(count)]


def _wait_acceptors(children: list[subprocess.Popen[bytes]], deadline: float) -> None:
    """Wait for the SIGTERMed acceptors (each drains like its parent, one SIGTERM only: a
    second would force it); SIGKILL one still there at ``deadline``."""
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()


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

    settings = _settings()
    target = directory or settings.resolved_keys_dir
    if key_type not in ("ec-p256", "rsa-3072"):
        raise _fail("--key-type is ec-p256 or rsa-3072", 2)
    shared_note_key = settings.log_note_key  # SEALPOST_LOG_NOTE_KEY: the log's key lives there
    with _reported():
        files = init_keys(
            target,
            organization=organization,
            hostnames=tuple(hostname or ["localhost"]),
            key_type=key_type,  # type: ignore[arg-type]
            force=force,
            note_key=shared_note_key is None,
        )
    out.print(f"keys written to {target} (private keys mode 0600); root CA: {files.root_ca_cert}")
    from sealpost.ledger.note import NoteSigner
    from sealpost.pki.keys import load_note_key

    note_key = shared_note_key or files.log_note_key
    if not note_key.exists():
        print(
            f"log note key: {note_key} does not exist: it is made at the first start of a fresh "
            "log; for an existing log, copy the log's key there"
        )
        return
    signer = NoteSigner(settings.ledger_origin, load_note_key(note_key))
    print(f"log verifier key: {signer.verifier.vkey()} ({note_key})")


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
    with _reported():
        tenant = sp.tenants.create(name)
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
    with _reported():
        found = sp.tenants.get(tenant)
    print(sp.tenants.issue_api_key(found.id, label).secret)


@tenant_app.command("smtp-credentials")
def tenant_smtp_credentials(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    username: Annotated[str | None, typer.Option(help="Default: a generated one.")] = None,
) -> None:
    """Issue SMTP AUTH credentials for a tenant (the password is shown once)."""
    from sealpost.app import build

    sp = build(_settings())
    with _reported():
        credential = sp.senders.issue_smtp_credential(sp.tenants.get(tenant).id, username)
    out.print("SMTP AUTH (PLAIN or LOGIN, after STARTTLS or on the implicit-TLS port):")
    print(f"username: {credential.username}")
    print(f"password: {credential.password}")


@tenant_app.command("smtp-revoke")
def tenant_smtp_revoke(username: Annotated[str, typer.Argument(help="The SMTP username.")]) -> None:
    """Revoke SMTP credentials (every process refuses them within 30 s)."""
    from sealpost.app import build

    with _reported():
        build(_settings()).senders.revoke_smtp_credential(username)
    out.print(f"revoked {username}")


@tenant_app.command("smtp-network")
def tenant_smtp_network(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    network: Annotated[str, typer.Argument(help="e.g. 192.0.2.10/32: the tenant's relay.")],
) -> None:
    """Let a mail server submit for the tenant by IP, without AUTH (like Postfix mynetworks)."""
    from sealpost.app import build

    sp = build(_settings())
    with _reported():
        added = sp.senders.add_network(sp.tenants.get(tenant).id, network)
    out.print(f"{added} may now submit for {tenant} without AUTH")


@tenant_app.command("domain")
def tenant_domain(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    domain: Annotated[str, typer.Argument(help="A sender domain of the tenant.")],
    selector: Annotated[str, typer.Option(help="DKIM selector Sealpost signs with.")] = "sealpost",
) -> None:
    """Register a sender domain: Sealpost DKIM-signs its mail and only lets it send From it."""
    from sealpost.app import build
    from sealpost.communications.email.dkim import generate_dkim_key

    sp = build(_settings())
    private_key, record = generate_dkim_key()
    with _reported():
        found = sp.senders.add_domain(
            sp.tenants.get(tenant).id,
            domain,
            selector=selector,
            private_key_pem=private_key,
            public_record=record,
        )
    out.print("Publish this TXT record so recipients can check Sealpost's DKIM signatures:")
    print(f'{found.dkim_selector}._domainkey.{found.domain}. IN TXT "{record}"')


@tenant_app.command("pin-dkim")
def tenant_pin_dkim(
    domain: Annotated[str, typer.Argument(help="A registered sender domain.")],
    selector: Annotated[str, typer.Argument(help="The selector of the tenant's own signer.")],
    record: Annotated[str, typer.Argument(help='Its TXT record, "v=DKIM1; k=rsa; p=...".')],
) -> None:
    """Pin the DKIM key the tenant's own mail server signs with (certify addresses)."""
    from sealpost.app import build

    with _reported():
        build(_settings()).senders.pin_key(domain, selector, record)
    out.print(f"pinned {selector}._domainkey.{domain}")


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


def _stderr(message: str) -> None:
    """One line on stderr, unwrapped (a monitor's lines are read by scripts and alerting)."""
    sys.stderr.write(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", message) + "\n")
    sys.stderr.flush()


def _fail_unwrapped(message: str, code: int) -> typer.Exit:
    _stderr(f"error: {message}")
    return typer.Exit(code)


@ledger_app.command("verifier-key")
def ledger_verifier_key() -> None:
    """Print the log's signed-note verifier key (``<origin>+<key id>+<key>``) for witnesses
    and monitors (c2sp.org/signed-note); also served at ``/log/verifier-key``."""
    from sealpost.app import build

    with _reported():
        print(build(_settings()).note_signer.verifier.vkey())


@ledger_app.command("monitor")
def ledger_monitor(
    url: Annotated[str, typer.Argument(help="The log's public prefix, e.g. https://host/log.")],
    key: Annotated[
        str, typer.Option("--key", help="The log's verifier key, <origin>+<key id>+<key>.")
    ],
    state: Annotated[
        Path, typer.Option(help="Where the last verified checkpoint is kept between runs.")
    ] = Path("sealpost-monitor.json"),
    once: Annotated[bool, typer.Option("--once", help="Check once and exit.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between checks when polling.")
    ] = 30.0,
) -> None:
    """Follow a Sealpost log over HTTP(S): verify each checkpoint's signature, recompute its
    root and the previous checkpoint's root from the public tiles; exit 1 on a fork, a bad
    signature, a shrinking tree or tiles that do not match (2: could not check, --once)."""
    import time

    from sealpost.ledger.monitor import (
        LogMisbehaved,
        LogUnreachable,
        Monitor,
        MonitorError,
        MonitorState,
    )
    from sealpost.ledger.note import NoteError, NoteVerifier

    try:
        verifier = NoteVerifier.parse(key)
        monitor = Monitor(url, verifier, MonitorState(state))
    except (NoteError, ValueError, MonitorError) as exc:
        raise _fail_unwrapped(f"cannot monitor: {exc}", 2) from None
    try:
        while True:
            try:
                previous, new = monitor.round()
            except LogUnreachable as exc:
                if once:
                    raise _fail_unwrapped(
                        f"could not check the log: {exc}", exc.exit_code
                    ) from None
                _stderr(f"could not check the log (retrying): {exc}")
            except LogMisbehaved as exc:
                for note in exc.notes:  # verified notes: no control characters but newlines
                    sys.stderr.write(note + "\n")
                raise _fail_unwrapped(f"LOG MISBEHAVED: {exc}", exc.exit_code) from None
            except MonitorError as exc:  # the state file: the check cannot be remembered
                raise _fail_unwrapped(f"cannot monitor: {exc}", exc.exit_code) from None
            else:
                size = new.checkpoint.tree_size
                since = (
                    "" if previous is None else f" (extends size {previous.checkpoint.tree_size})"
                )
                print(f"ok: {verifier.name} at size {size}{since}", flush=True)
            if once:
                return
            time.sleep(interval)
    finally:
        monitor.close()


@archive_app.command("purge")
def archive_purge(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant (its id); default: every tenant.")
    ] = None,
) -> None:
    """Purge now what retention allows (normally the worker does it hourly); never anything
    under a legal hold.  Each purged message gets a Purged evidence record."""
    from sealpost.app import build

    with _reported():
        parts = build(_settings()).archive_holds
        result = parts.purger.purge_due(tenant)
        removed = parts.exports.remove_stale() if tenant is None else 0
    out.print(
        f"purged {result.purged} message(s); kept {result.held} under legal hold; "
        f"deleted {result.blobs_deleted} blob(s); removed {removed} old export file(s)"
    )


def _verify_export(path: Path, roots: list[x509.Certificate], as_json: bool) -> None:
    """An export ZIP of the archive: manifest, every file, the sealed report, the bundles."""
    from sealpost.archive.custody import verify_export

    report = verify_export(path, trust_roots=roots)
    unreadable = any(c.name == "zip" for c in report.failures)  # not a ZIP at all
    code = 0 if report.ok else 2 if unreadable else 1
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
        raise typer.Exit(code)
    _print_checks(report.checks)
    for check in report.failures:
        err.print(f"[bold red]FAILED[/] {_shown(check.field)}: {_shown(check.detail)}")
    verdict = "[bold green]VALID[/]" if report.ok else "[bold red]NOT VALID[/]"
    out.print(f"{verdict}: {_shown(report.statement())}")
    raise typer.Exit(code)


def _print_checks(checks: list[Any]) -> None:
    table = Table("check", "field", "result")
    for check in checks:
        mark = "[green]ok[/]" if check.ok else "[bold red]FAILED[/]"
        table.add_row(_shown(check.name), _shown(check.field), f"{mark} {_shown(check.detail)}")
    out.print(table)


def _supersession(pdf_sha256: str) -> dict[str, Any] | None:
    """What this Sealpost's database knows of newer versions (None: nothing, or no database)."""
    from sqlalchemy.exc import SQLAlchemyError

    from sealpost.app import build

    settings = Settings()
    database = settings.resolved_database_url
    if database.startswith("sqlite:///") and not Path(database[len("sqlite:///") :]).exists():
        return None
    try:
        sp = build(settings, prepare=False)
        found = sp.certificates.supersession(pdf_sha256)
    except (SQLAlchemyError, SealpostError, OSError):
        return None
    if found is None:
        return None
    this, latest = found
    return {
        "version": this.version,
        "superseded_by": {
            "version": latest.version,
            "sha256": latest.sha256,
            "issued_at": latest.created_at.isoformat(),
            "reason": latest.reason,
        },
    }


def _verify_pdf(data: bytes, roots: list[x509.Certificate], as_json: bool) -> None:
    from sealpost.certificates.verify import verify_certificate_pdf

    try:
        report = verify_certificate_pdf(data, trust_roots=roots)
    except SealpostError as exc:
        if as_json:
            print(json.dumps({"valid": False, "error": exc.message}))
        raise _fail(f"cannot read the certificate: {exc.message}", 2) from None
    superseded = _supersession(report.pdf_sha256) if report.ok else None
    if as_json:
        print(
            json.dumps(
                {
                    "valid": report.ok,
                    "statement": report.statement(),
                    "sha256": report.pdf_sha256,
                    "version": report.version,
                    "superseded": superseded,
                    "checks": [c.__dict__ for c in report.checks],
                },
                indent=2,
            )
        )
        raise typer.Exit(0 if report.ok else 1)
    _print_checks(report.checks)
    verdict = "[bold green]VALID[/]" if report.ok else "[bold red]NOT VALID[/]"
    out.print(f"{verdict}: {_shown(report.statement())}")
    if superseded:
        newer = superseded["superseded_by"]
        out.print(
            f"[bold yellow]SUPERSEDED[/]: this is version {superseded['version']}; version "
            f"{newer['version']} (SHA-256 {newer['sha256']}, issued {newer['issued_at']}, "
            f"{_shown(newer['reason'])}) replaces it. This version remains valid evidence of "
            "what was known when it was issued."
        )
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def verify(
    file: Annotated[
        Path,
        typer.Argument(
            help="An evidence bundle (.json), a certificate (.pdf) or an archive export "
            "(.zip); - for stdin (not for a .zip)."
        ),
    ],
    trust: Annotated[
        list[Path] | None, typer.Option(help="Root certificate(s) to pin (PEM).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Verify a bundle, a certificate or an archive export offline; exit 0 if valid, 1 if
    not, 2 if unreadable.  For an export, each altered, missing or extra file is named.

    For a certificate PDF this also says whether a newer version supersedes it, when run
    where this Sealpost's database is reachable.
    """
    from sealpost.ledger.verify import verify_bundle

    try:
        roots = [x509.load_pem_x509_certificate(p.read_bytes()) for p in trust or []]
        if str(file) != "-":
            with file.open("rb") as head:
                if head.read(4) == b"PK\x03\x04":  # a ZIP: an archive export, read as a file
                    _verify_export(file, roots, as_json)
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except (OSError, ValueError, x509.InvalidVersion) as exc:
        raise _fail(str(exc), 2) from None
    if data.lstrip()[:5] == b"%PDF-" or file.suffix.lower() == ".pdf":
        _verify_pdf(data, roots, as_json)
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
    _print_checks(report.checks)
    verdict = "[bold green]VALID[/]" if report.ok else "[bold red]NOT VALID[/]"
    out.print(f"{verdict}: {_shown(report.statement())}")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its own keys, database and certificate.")
    ] = Path("data/demo"),
) -> None:
    """Send one certified email to a local recipient server and verify its certificate."""
    from sealpost.demo import run_demo

    _settings()  # logging as configured
    try:
        result = run_demo(data_dir, say=out.print)
    except (SealpostError, TimeoutError, OSError) as exc:
        raise _fail(f"the demo failed: {exc}") from None
    verdict = "[bold green]VALID[/]" if result.valid else "[bold red]NOT VALID[/]"
    out.print(f"6. {verdict}: {result.statement}")
    out.print(
        f"Check it yourself: sealpost verify {result.certificate} --trust {result.trust_root}"
        f"   (or: pdfsig {result.certificate})"
    )
    raise typer.Exit(0 if result.valid else 1)


def main() -> None:
    """The ``sealpost`` command: process-wide start-up (the asn1crypto fix), then typer."""
    asn1.install()
    app()
