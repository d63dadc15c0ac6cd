"""Settings, read once from the environment (``SEALPOST_*``) or a ``.env`` file.

One pydantic-settings class for the whole service: every process role reads the same names,
so a deployment is described by one environment.  ``.env.template`` lists them all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sealpost.ratelimit import Rate

MIB = 1024 * 1024


def _rate(value: object) -> object:
    return Rate.parse(value) if isinstance(value, str) else value


RateSetting = Annotated[Rate, BeforeValidator(_rate)]
"""A rate written ``COUNT/PERIOD`` (``600/minute``, ``5/15m``); an empty value turns it off."""


def _base64_room(raw_bytes: int) -> int:
    """A JSON body carrying ``raw_bytes`` as base64 (4 characters per 3 bytes), plus 1 MiB
    for everything around it."""
    return -(-raw_bytes // 3) * 4 + MIB


class Settings(BaseSettings):
    """Sealpost's configuration; defaults give the embedded, single-machine setup."""

    model_config = SettingsConfigDict(
        env_prefix="SEALPOST_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_parse_none_str="",  # SEALPOST_SMTP_TLS_PORT= (empty) means "off", i.e. None
    )

    data_dir: Path = Field(
        Path("data"), description="Database, keys and blobs of the embedded default."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite (WAL) at <data_dir>/sealpost.db."
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss after a commit; NORMAL only a process crash."
    )

    database_pool_size: int = Field(
        20,
        ge=1,
        le=500,
        description="PostgreSQL connections each process keeps open (as many more for a "
        "burst): at least the requests one API process serves at once, so that none opens and "
        "closes a connection of its own.",
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes sharing the port (SO_REUSEPORT), for the api and all roles "
        "(``sealpost serve --workers``): one Python process serves about one core of "
        "requests; set it to the cores of an API replica.",
    )

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = Field(
        "console",
        description="console: key=value lines for a terminal; json: one JSON object per line "
        "(stderr), each line about a communication carrying its communication_id.",
    )
    ops_host: str = Field(
        "127.0.0.1",
        description="Address of the operations listener (/metrics, /healthz, /readyz).",
    )
    ops_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of the operations listener of every serve role (/metrics, /healthz, "
        "/readyz; SMTP acceptor processes take the next free ports above it); unset or 0: "
        "off.  See docs/monitoring.md.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token for /metrics on the API port; unset: /metrics is not served "
        "on the API port (scrape the operations listener instead).",
    )
    metrics_backlog_cap: int = Field(
        100_000,
        ge=1,
        description="Backlog gauges count at most this many rows per scrape (bounded queries).",
    )

    ledger_origin: str = Field(
        "localhost/sealpost",
        description="C2SP checkpoint origin: names this log; set it to your public host + path.",
    )
    batch_window_ms: int = Field(
        200, ge=1, le=1000, description="How long the sequencer gathers records before sealing."
    )
    batch_max_records: int = Field(
        50_000, ge=1, description="Largest batch sealed in one tree head."
    )
    sequencer_enabled: bool = Field(True, description="Whether this process may act as sequencer.")
    sequencer_lease_seconds: float = Field(
        10.0, gt=0, description="How long a sequencer holds the lease without renewing it."
    )
    shutdown_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="On SIGTERM, `serve` stops accepting and gives work in flight (an SMTP "
        "transaction, an API request, a delivery, a webhook POST) this long to finish; then it "
        "releases every lease it still holds and exits (a second SIGTERM or SIGINT: at once).",
    )
    health_max_unsealed_seconds: float = Field(
        60.0,
        gt=0,
        description="/healthz answers 503 once a committed record has waited this long for a "
        "tree head (sealing stopped: no sequencer, TSA or database down).",
    )
    health_min_free_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="/healthz reports `degraded` once the filesystem of the data directory, the "
        "blobs or the SQLite database has less free space than this, and 503 under 1 MiB "
        "(storage full: writes fail); 0 turns the check off.",
    )

    keys_dir: Path | None = Field(None, description="Local keys; default <data_dir>/keys.")
    seal_certificate: Path | None = Field(None, description="Operator's seal certificate (PEM).")
    seal_key: Path | None = Field(None, description="Operator's seal private key (PEM).")
    seal_pkcs12: Path | None = Field(
        None, description="Operator's seal as PKCS#12, instead of PEM."
    )
    seal_key_password: SecretStr | None = None
    log_note_key: Path | None = Field(
        None,
        description="The log's Ed25519 key signing checkpoints as C2SP signed notes (PKCS#8 "
        "PEM); default <keys_dir>/log-note.key.  It is the log's identity to monitors and "
        "witnesses: every process that may be sequencer must have the same key (a shared file, "
        "like the seal).  Made at start only while no head carries a note signature; after "
        "that a missing key, or another key, is a start-up error.",
    )

    tsa_url: str | None = Field(
        None, description="External RFC 3161 TSA; default: the embedded TSA with local keys."
    )
    tsa_username: str | None = None
    tsa_password: SecretStr | None = None
    tsa_timeout_seconds: float = 10.0
    tsa_policy_oid: str = "1.3.6.1.4.1.61017.1.1"

    blob_dir: Path | None = Field(
        None, description="Content blobs by SHA-256; default <data_dir>/blobs."
    )
    blob_url: str = Field(
        "",
        pattern=r"^(s3://[^/\s]+(/\S*)?)?$",
        description="Where content blobs live: empty for files under blob_dir (the embedded "
        "default), or s3://bucket/prefix for an S3-compatible object store shared by every "
        "process (objects <prefix>/blobs/<sha256>, <prefix>/archive/..., "
        "<prefix>/archive-exports/...).",
    )
    blob_s3_endpoint_url: str | None = Field(
        None,
        description="The S3 API's URL (http://127.0.0.1:9000 for a MinIO...); empty for AWS.",
    )
    blob_s3_region: str | None = Field(
        None, description="The bucket's region (us-east-1 when empty)."
    )
    blob_s3_access_key_id: str | None = Field(
        None,
        description="Access key id; empty: boto3's own chain (AWS_* variables, instance role).",
    )
    blob_s3_secret_access_key: SecretStr | None = Field(
        None, description="Secret access key of blob_s3_access_key_id."
    )
    blob_s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto",
        description="path (endpoint/bucket/key: most self-hosted stores) or virtual "
        "(bucket.endpoint/key); auto lets boto3 choose.",
    )
    content_inline_max_bytes: int = Field(
        1024 * 1024,
        ge=0,
        description="Messages up to this size are stored in the database, in the transaction "
        "that accepts them (one sync per group commit); larger ones as blob files.",
    )

    # -- certified email ---------------------------------------------------------------------
    hostname: str = Field(
        "localhost", description="This server's name: SMTP banner, Received headers, Message-IDs."
    )
    smtp_enabled: bool = Field(True, description="Run the SMTP listeners in `serve`.")
    smtp_host: str = Field("127.0.0.1", description="Address the SMTP listeners bind to.")
    smtp_submission_port: int = Field(
        2587, description="Submission with STARTTLS (RFC 6409); 587 in production."
    )
    smtp_tls_port: int | None = Field(
        2465, description="Submission over implicit TLS (RFC 8314); 465 in production; empty: off."
    )
    smtp_inbound_port: int | None = Field(
        2525, description="Inbound: certify addresses and bounces; 25 in production; empty: off."
    )
    smtp_inbound_idle_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="Inbound port: a client silent this long is disconnected (RFC 5321 "
        "§4.5.3.2); a journal DATA resets it per chunk received.",
    )
    smtp_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="SMTP acceptor processes sharing the ports (SO_REUSEPORT): parsing and "
        "TLS run on one core per process; set it to the number of cores on an SMTP replica.",
    )
    smtp_max_message_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest message accepted (SIZE); larger gets 552."
    )
    smtp_max_recipients: int = Field(100, ge=1, description="Recipients per SMTP transaction.")
    smtp_tls_certificate: Path | None = Field(
        None, description="SMTP TLS certificate (PEM chain); default: the local one in keys/."
    )
    smtp_tls_key: Path | None = Field(None, description="SMTP TLS private key (PEM).")
    smtp_auth_max_failures: int = Field(
        5, ge=1, description="Failed AUTH attempts from one IP before it is locked out."
    )
    smtp_auth_lockout_seconds: float = Field(
        300.0, gt=0, description="How long an IP stays locked out after too many failures."
    )
    certify_domain: str | None = Field(
        None,
        description="Address-rewriting suffix: mail to alice@example.com.<certify_domain> is "
        "certified and delivered to alice@example.com (DKIM of a verified domain required).",
    )
    bounce_domain: str | None = Field(
        None, description="Domain of the VERP return path (bounces+<id>@...); default hostname."
    )

    delivery_enabled: bool = Field(True, description="Run the delivery worker in `serve`.")
    delivery_concurrency: int = Field(20, ge=1, description="Parallel deliveries per worker.")
    delivery_smarthost: str | None = Field(
        None, description="host:port to relay every message through instead of MX lookups."
    )
    delivery_routes: dict[str, str] = Field(
        default_factory=dict,
        description='Per-domain next hop, JSON: {"example.com": "127.0.0.1:2526"} is the '
        'recipient\'s own server (status "delivered"); "relay:host:port" an intermediary '
        'MTA (status "relayed"). Either 250 is RelayToNonERDS evidence.',
    )
    delivery_require_tls: bool = Field(
        False, description="Refuse to deliver without STARTTLS (default: opportunistic)."
    )
    delivery_verify_tls: bool = Field(
        False, description="Check the next hop's certificate (MX certificates rarely verify)."
    )
    delivery_timeout_seconds: float = Field(60.0, gt=0, description="Per SMTP command.")
    delivery_lease_seconds: float = Field(
        300.0, gt=0, description="How long a claimed delivery is reserved for its worker."
    )
    delivery_retry_initial_seconds: float = Field(
        60.0, gt=0, description="First retry delay after a 4xx or connection failure."
    )
    delivery_retry_max_seconds: float = Field(
        3600.0, gt=0, description="Longest delay between two attempts (exponential backoff)."
    )
    delivery_warn_after_seconds: float = Field(
        12 * 3600.0, gt=0, description="DelayWarning evidence after this long undelivered (PEC)."
    )
    delivery_expire_after_seconds: float = Field(
        24 * 3600.0, gt=0, description="NonDelivery (expired) after this long undelivered (PEC)."
    )
    dns_nameservers: list[str] = Field(
        default_factory=list, description="Resolvers for MX and DKIM lookups; default: system."
    )

    certificates_enabled: bool = Field(
        True, description="Seal evidence certificates (PDF) in the background in `serve`."
    )
    certificate_processes: int | None = Field(
        None,
        ge=0,
        description="Worker processes the background issuer renders and seals certificates "
        "in (CPU-bound: apart from the API's and SMTP's GIL); default: one per CPU; 0: in the "
        "issuer's own thread.",
    )

    # -- events out ---------------------------------------------------------------------------
    amqp_url: str | None = Field(
        None,
        description="RabbitMQ, e.g. amqp://user:pass@host:5672/vhost; without it events are "
        "still recorded for webhooks and GET /v1/events.",
    )
    amqp_exchange: str = Field("sealpost.events", description="Durable topic exchange.")
    amqp_queue_prefix: str = Field(
        "sealpost.events.", description="Per-tenant FIFO queue: <prefix><tenant id>."
    )
    amqp_queue_type: Literal["quorum", "classic"] = Field(
        "quorum",
        description="quorum (replicated) or classic durable; both with single active consumer.",
    )
    events_dispatcher_enabled: bool = Field(
        True, description="Run the events dispatcher (one active at a time, by lease) in `serve`."
    )
    events_poll_interval_ms: int = Field(
        20,
        ge=1,
        le=5000,
        description="How often the dispatcher and the webhook sender look for work while busy.",
    )
    events_idle_poll_interval_ms: int = Field(
        250,
        ge=1,
        le=60000,
        description="How often they look after a second without work (changes committed in "
        "the same process wake them at once; this bounds the wait for other processes').",
    )
    events_lease_seconds: float = Field(
        10.0, gt=0, description="How long a dispatcher holds its lease without renewing it."
    )
    events_retention_days: int = Field(
        30,
        ge=1,
        description="Events, and finished webhook deliveries with their attempts, are purged "
        "this long after their time (never one RabbitMQ has not confirmed, nor one a webhook "
        "still retries); the evidence records they came from are kept for good.",
    )
    webhooks_enabled: bool = Field(True, description="Run the webhook sender in `serve`.")
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, description="Per request: connect, send and the first response byte."
    )
    webhook_concurrency: int = Field(50, ge=1, description="Parallel requests per sender.")
    webhook_concurrency_per_endpoint: int = Field(
        10, ge=1, description="Parallel requests to one endpoint (a slow one cannot starve others)."
    )
    webhook_retry_initial_seconds: float = Field(
        5.0, gt=0, description="First retry delay; doubles each time, with jitter."
    )
    webhook_retry_max_seconds: float = Field(
        7200.0, gt=0, description="Longest delay between two attempts of one delivery."
    )
    webhook_retry_window_seconds: float = Field(
        24 * 3600.0,
        gt=0,
        description="A delivery is retried for this long (the last attempt at its end); an "
        "endpoint failing for this long without one success is disabled.",
    )
    webhook_lease_seconds: float = Field(
        120.0, gt=0, description="How long a claimed webhook delivery is reserved for its sender."
    )
    webhook_previous_secret_seconds: float = Field(
        24 * 3600.0, ge=0, description="After a secret rotation, the old secret signs this long."
    )
    webhook_allow_private_networks: bool = Field(
        False,
        description="Allow endpoints on loopback/private/link-local addresses (off: no SSRF "
        "into your own network); set it for a receiver on the same machine.",
    )

    public_url: str | None = Field(
        None,
        description="How people reach this Sealpost (signing links in emails); default "
        "http://<api_host>:<api_port>.",
    )
    tracking_automated_seconds: float = Field(
        60.0,
        ge=0,
        description="Open and click tracking: a hit this soon after delivery is marked "
        "likely_automated (mail scanners fetch images and follow links within seconds).",
    )
    tracking_coalesce_seconds: float = Field(
        60.0,
        ge=0,
        description="Open and click tracking: at most one evidence record per tracking token "
        "in this window; the hits in between are counted and named in the next record.",
    )
    signing_mail_from: str | None = Field(
        None,
        description="From address of signing invitations and codes; default signatures@<hostname>.",
    )
    signing_link_hours: float = Field(
        72.0,
        gt=0,
        description="A signing link is single-use and valid this long (at most until the "
        "process expires).",
    )
    signing_session_minutes: float = Field(
        60.0, gt=0, description="How long an opened signing page stays usable."
    )
    signing_default_expiry_days: float = Field(
        30.0, gt=0, description="A process without expires_at expires this long after creation."
    )
    signing_worker_enabled: bool = Field(
        True, description="Run the signature worker (expiries, reminders, TSA retries) in `serve`."
    )
    signing_worker_interval_seconds: float = Field(
        2.0, gt=0, description="How often the worker looks for expiries, reminders and retries."
    )
    signing_max_document_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="Largest PDF a signature process accepts."
    )
    pickup_mail_from: str | None = Field(
        None, description="From address of pickup notices and codes; default pickup@<hostname>."
    )
    pickup_default_days: float = Field(
        15.0,
        gt=0,
        description="Pickup window of the 'default' policy, from the notice (es: 10 natural "
        "days; fr: 15 days from the day after the notice).",
    )
    pickup_hide_sender: bool = Field(
        False,
        description="The 'default' policy's notice does not name the sender (fr always hides "
        "it until acceptance).",
    )
    pickup_reminder_days: list[float] = Field(
        default_factory=lambda: [3.0],
        description="Days before the pickup window closes when a reminder notice goes to a "
        "recipient who has not identified yet; [] for none.",
    )
    pickup_session_minutes: float = Field(
        30.0, gt=0, description="How long an opened pickup page stays usable."
    )
    pickup_worker_enabled: bool = Field(
        True, description="Run the pickup worker (notices, reminders, expiries) in `serve`."
    )
    sequences_worker_enabled: bool = Field(
        True,
        description="Run the reminder sequences' scheduler (due steps) and follower (stops "
        "from other domains' events) in `serve`.",
    )
    archive_journal_max_bytes: int = Field(
        150 * 1024 * 1024,
        ge=1024,
        description="Largest message the archive's journal address takes on the inbound port "
        "(streamed to disk, never held whole in memory); larger gets 552.",
    )
    archive_journal_data_max_seconds: float = Field(
        3600.0,
        gt=0,
        description="The longest a journal DATA may take to arrive, however steadily it "
        "flows (then the connection is closed, nothing kept, the server retries).",
    )
    archive_outgoing: bool = Field(
        True,
        description="Archive every email Sealpost accepts (SMTP submission or API) as an "
        "outbound message of its tenant's archive, except those carrying an access secret.",
    )
    archive_worker_enabled: bool = Field(
        True,
        description="Run the archive's follower (archives the emails Sealpost accepted) in "
        "`serve`.",
    )
    archive_imap_enabled: bool = Field(
        True,
        description="Run the mail archive's IMAP pull (configured mailboxes) in `serve`.",
    )
    archive_imap_poll_seconds: float = Field(
        60.0, gt=0, description="How often a mailbox without IDLE is read again."
    )
    archive_imap_idle_seconds: float = Field(
        300.0,
        gt=0,
        description="How long one IDLE session on a mailbox lasts before the worker lets it go "
        "(and reads all its folders again); RFC 2177 asks for less than 29 minutes.",
    )
    archive_imap_concurrency: int = Field(
        8, ge=1, description="Mailboxes one worker process reads at once."
    )
    archive_imap_ingest_threads: int = Field(
        4,
        ge=1,
        description="Messages of one fetched chunk archived at once (their blob writes and "
        "commits overlap); the folder's cursor moves past the chunk once all committed.",
    )
    archive_imap_timeout_seconds: float = Field(
        30.0, gt=0, description="Connect and read timeout of each IMAP connection."
    )
    archive_imap_backoff_max_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between two attempts on a failing mailbox."
    )
    archive_imap_allow_private_networks: bool = Field(
        False,
        description="Allow IMAP servers on loopback/private/link-local addresses (off: no "
        "probing of your own network through a tenant's mailbox settings).",
    )
    pickup_worker_interval_seconds: float = Field(
        2.0, gt=0, description="How often the pickup worker looks for due work."
    )
    deadlines_worker_enabled: bool = Field(
        True,
        description="Run the deadlines loop (terms started from their trigger evidence, "
        "DeadlineApproaching, DeadlinePassed) in `serve`.",
    )
    deadlines_interval_seconds: float = Field(
        5.0, gt=0, description="How often the deadlines loop looks for new triggers and due terms."
    )
    archive_purge_enabled: bool = Field(
        True,
        description="Run the archive's retention purge in `serve` (worker role): messages "
        "archived longer ago than the tenant's retention_days and under no legal hold.",
    )
    archive_purge_interval_seconds: float = Field(
        3600.0, gt=0, description="How often the archive's retention purge runs."
    )
    deadlines_lead_business_days: int = Field(
        2,
        ge=0,
        le=60,
        description="DeadlineApproaching this many business days before a term's last day.",
    )
    archive_indexer_enabled: bool = Field(
        True,
        description="Run the archive's search indexer (the text of newly archived messages and "
        "their PDF attachments) in `serve` (worker role).",
    )
    archive_indexer_interval_seconds: float = Field(
        1.0, gt=0, description="How often the archive's indexer looks for messages to index."
    )
    archive_index_pdf_max_mb: int = Field(
        25, ge=1, description="Attached PDFs larger than this are not read for search (listed)."
    )
    archive_index_pdf_timeout_seconds: float = Field(
        20.0,
        gt=0,
        le=600,
        description="Longest the reading of one attached PDF may take for the search index "
        "(in a child process; beyond, it is listed as not indexed).",
    )
    archive_index_pdf_max_pages: int = Field(
        300, ge=1, description="Pages of an attached PDF read for the search index."
    )
    pdf_intake_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Longest the reading of one uploaded PDF may take (its check at POST "
        "/v1/signatures, its anchors, or one page image of the signing page), in a worker "
        "process; beyond, 422 document_too_complex. The CPU time limit is this, rounded up, "
        "plus 1 s; a request waits at most this long for a free worker (then 503 intake_busy).",
    )
    pdf_intake_memory_mb: int = Field(
        1024,
        ge=256,
        description="Address space (RLIMIT_AS) of each PDF intake worker process, in MiB; a "
        "document that needs more is refused with 422 document_too_complex.",
    )
    pdf_intake_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="PDF intake worker processes per API process: documents read at once.",
    )

    # -- SMS over an HTTP gateway (docs/sms.md, "HTTP gateway") ------------------------------
    sms_http_url: str | None = Field(
        None,
        description="The gateway's submit URL (a template over {to}, {from}, {text}, {sms_id}, "
        "{segment}...); Twilio: https://api.twilio.com/2010-04-01/Accounts/<AccountSid>/"
        "Messages.json; empty: no HTTP gateway.",
    )
    sms_http_preset: Literal["twilio", "json"] = Field(
        "json",
        description="twilio: form To/From/Body, basic auth with the account SID and auth "
        "token, the answer's sid; json: a JSON body, optional bearer token, the answer's id.",
    )
    sms_http_method: str | None = Field(None, description="Overrides the preset's (POST).")
    sms_http_headers: dict[str, str] = Field(
        default_factory=dict, description='Extra headers, JSON: {"X-Route": "{segments}"}.'
    )
    sms_http_body_template: str | None = Field(
        None,
        description="Overrides the preset's body, as JSON: an object of form fields (twilio "
        "preset) or the JSON body whose strings are templates (json preset); null: no body.",
    )
    sms_http_per: Literal["message", "segment"] | None = Field(
        None, description="One request per message (presets) or per segment."
    )
    sms_http_response: Literal["json", "form", "text"] | None = Field(
        None, description="How the answer carries the operator's id (presets: json)."
    )
    sms_http_id_path: str | None = Field(
        None,
        description="JSON pointer of the operator's id (* maps over an array: "
        "/messages/*/message-id), or the form key; presets: /sid (twilio), /id (json).",
    )
    sms_http_auth: Literal["none", "basic", "bearer"] | None = Field(
        None, description="Request authentication; presets: basic (twilio), bearer if a token."
    )
    sms_http_username: str | None = Field(None, description="Basic auth user (Twilio: AccountSid).")
    sms_http_password: SecretStr | None = Field(
        None, description="Basic auth password (Twilio: the auth token)."
    )
    sms_http_token: SecretStr | None = Field(None, description="Bearer token.")
    sms_http_timeout_seconds: float = Field(
        10.0, gt=0, description="Per request; a timeout is a temporary failure (retried)."
    )
    sms_http_callback_secret: SecretStr | None = Field(
        None,
        description="Checks delivery-report callbacks: Twilio's auth token (X-Twilio-Signature; "
        "default: SMS_HTTP_PASSWORD with the twilio preset) or a whsec_ secret (Standard "
        "Webhooks) for the JSON reports; without it every callback is refused.",
    )
    sms_http_callback_url: str | None = Field(
        None,
        description="The public base URL the gateway calls the callbacks at (Twilio signs the "
        "full URL); default PUBLIC_URL.",
    )
    # -- certified SMS (docs/sms.md) -------------------------------------------------------
    sms_provider: Literal["none", "smpp", "http"] = Field(
        "none",
        description="Which operator adapter sends SMS: none (accepted SMS wait, queued), smpp "
        "(SMPP 3.4, the SMPP_* settings) or http (an HTTP gateway).",
    )
    sms_sender_enabled: bool = Field(
        True, description="Run the SMS sender and the receipt clock in `serve`."
    )
    sms_default_sender: str = Field(
        "Sealpost",
        max_length=16,
        description="Originator when a request names none: alphanumeric (at most 11 "
        "characters on most networks) or an E.164 number.",
    )
    sms_unconfirmed_after_seconds: float = Field(
        48 * 3600.0,
        gt=0,
        description="An SMS without a final delivery receipt for every segment this long after "
        "the operator took it becomes `unconfirmed` (never `delivered`).",
    )
    sms_confirm_interval_seconds: float = Field(
        5.0, gt=0, description="How often the receipt clock looks for overdue SMS."
    )
    sms_concurrency: int = Field(16, ge=1, description="SMS submitted at once per sender.")
    sms_senders: int = Field(
        4, ge=1, le=64, description="Sender loops per process (each claims its own batches)."
    )
    sms_batch: int = Field(50, ge=1, le=1000, description="SMS one sender claims at a time.")
    sms_lease_seconds: float = Field(
        120.0, gt=0, description="How long a claimed SMS is reserved for its sender."
    )
    sms_retry_initial_seconds: float = Field(
        5.0, gt=0, description="First retry delay after a temporary failure; doubles."
    )
    sms_retry_max_seconds: float = Field(
        600.0, gt=0, description="Longest delay between two submission attempts of one SMS."
    )
    sms_validity_seconds: float = Field(
        86400.0,
        gt=0,
        description="How long an accepted SMS may wait for the operator to take it; past it, "
        "it fails (NonDelivery, expired_in_queue). Also sent as SMPP validity_period.",
    )
    smpp_host: str = Field("127.0.0.1", description="The SMSC's host (SMPP 3.4).")
    smpp_port: int = Field(2775, ge=1, le=65535, description="The SMSC's port.")
    smpp_system_id: str = Field("", max_length=15, description="bind_transceiver system_id.")
    smpp_password: SecretStr = Field(
        SecretStr(""), description="bind_transceiver password (at most 8 characters)."
    )
    smpp_system_type: str = Field("", max_length=12, description="bind system_type, if any.")
    smpp_source_address: str | None = Field(
        None, description="Originator sent to the SMSC; default SMS_DEFAULT_SENDER."
    )
    smpp_timeout_seconds: float = Field(
        10.0, gt=0, description="How long a submit_sm waits for its response."
    )
    smpp_enquire_link_seconds: float = Field(
        30.0, gt=0, description="An idle link sends enquire_link this often (keepalive)."
    )
    smpp_partial_retry_seconds: float = Field(
        2.0,
        ge=0,
        description="Once a segment of a message was taken, how long a later one is retried "
        "in place before the message waits (and resumes with only the segments not taken).",
    )

    # -- limits of what one client may ask (docs/operations.md, "Limits") --------------------
    api_max_body_bytes: int = Field(
        MIB,
        ge=1024,
        description="Largest request body of an API route that carries no document (webhooks, "
        "replays, settings...); larger answers 413 before the rest is read.",
    )
    api_max_communication_body_bytes: int | None = Field(
        None,
        ge=1024,
        description="Largest body of POST /v1/communications; default: room for a message of "
        "SMTP_MAX_MESSAGE_BYTES in base64, plus 1 MiB.",
    )
    api_max_signature_body_bytes: int | None = Field(
        None,
        ge=1024,
        description="Largest body of POST /v1/signatures; default: room for two documents of "
        "SIGNING_MAX_DOCUMENT_BYTES in base64, plus 1 MiB.",
    )
    api_max_tsa_body_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Largest body of POST /tsa (an RFC 3161 TimeStampReq is a few hundred bytes).",
    )
    api_max_signing_page_body_bytes: int = Field(
        MIB,
        ge=1024,
        description="Largest body of the signing page's calls (a drawn signature is at most "
        "800 kB).",
    )
    api_max_pickup_page_body_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Largest body of the pickup page's calls (a code, an answer, a reason).",
    )
    rate_limit_api_per_tenant: RateSetting | None = Field(
        Rate.parse("6000/minute"),
        description="API requests per tenant (429 with Retry-After beyond); empty: off.",
    )
    rate_limit_api_per_ip: RateSetting | None = Field(
        Rate.parse("6000/minute"),
        description="HTTP requests per client IP (IPv6: per /64), keyed or not, signing and "
        "pickup pages and /healthz apart; empty: off.",
    )
    rate_limit_signing_page_per_ip: RateSetting | None = Field(
        Rate.parse("600/minute"),
        description="Signing page requests (/sign/...) per client IP; empty: off.",
    )
    rate_limit_pickup_page_per_ip: RateSetting | None = Field(
        Rate.parse("600/minute"),
        description="Pickup page requests (/pickup/...) per client IP; empty: off.",
    )
    rate_limit_codes_per_ip: RateSetting | None = Field(
        Rate.parse("60/hour"),
        description="One-time codes sent and checked per client IP, across links (each link "
        "also allows 5 sends and 5 checks); empty: off.",
    )
    smtp_max_connections_per_ip: int | None = Field(
        100,
        ge=1,
        description="Open SMTP connections per client IP (421 beyond); a tenant's trusted "
        "relay networks are exempt; empty: off.",
    )
    rate_limit_smtp_connections_per_ip: RateSetting | None = Field(
        Rate.parse("6000/minute"),
        description="New SMTP connections per client IP (421 beyond); trusted relay networks "
        "exempt; empty: off.",
    )
    rate_limit_smtp_commands_per_ip: RateSetting | None = Field(
        Rate.parse("30000/minute"),
        description="SMTP commands (QUIT apart) per client IP in sessions not authenticated "
        "(421 and close beyond): five per connection at the connection rate; trusted relay "
        "networks exempt; empty: off.",
    )

    @cached_property
    def resolved_api_max_communication_body_bytes(self) -> int:
        return self.api_max_communication_body_bytes or _base64_room(self.smtp_max_message_bytes)

    @cached_property
    def resolved_api_max_signature_body_bytes(self) -> int:
        return self.api_max_signature_body_bytes or _base64_room(
            2 * self.signing_max_document_bytes
        )

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'sealpost.db').resolve()}"

    @cached_property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @property
    def resolved_log_note_key(self) -> Path:
        return self.log_note_key or self.resolved_keys_dir / "log-note.key"

    @cached_property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @cached_property
    def resolved_signing_mail_from(self) -> str:
        return self.signing_mail_from or f"signatures@{self.hostname}"

    @property
    def resolved_pickup_mail_from(self) -> str:
        return self.pickup_mail_from or f"pickup@{self.hostname}"

    @cached_property
    def resolved_bounce_domain(self) -> str:
        return self.bounce_domain or self.hostname

    @cached_property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"
