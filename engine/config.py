"""Settings, read once from the environment (and command-line overrides) into a frozen object.

This is the only module that reads os.environ. The SMTP relay's settings are parsed and
checked here too (`RelaySettings`, docs/sending.md "Relay settings"), so a bad relay URL
or TLS option is refused when a command starts, naming the variable, not mid-campaign.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_URL = "sqlite+aiosqlite:///./consentry.db"
SMTP_URL_VARIABLE = "CONSENTRY_SMTP_URL"

N = TypeVar("N", int, float)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_URL
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Where `POST /api/v1/campaigns/{code}/launch` runs a campaign: "arq" (batches enqueued
    # for `consentry worker`s) when CONSENTRY_REDIS_URL is set, else "inline" (a background
    # task of the serving process). CONSENTRY_LAUNCH_BACKEND overrides (docs/api.md).
    launch_backend: str = "inline"
    smtp_url: str = "smtp://127.0.0.1:1025"
    twilio_url: str = "http://127.0.0.1:8025"
    twilio_account_sid: str = "ACconsentrylocal00000000000000000"
    twilio_auth_token: str = "consentry-local-token"
    public_url: str = "http://127.0.0.1:8080"
    # Where Twilio posts status callbacks: `{callback_url}/webhooks/twilio/{tenant}/status`.
    # Empty: the public URL. It differs where the SMS provider reaches `serve` by another
    # name than recipients' browsers do (compose: the capture server posts to the service
    # name `consentry-api`, while a person on the host opens links on localhost).
    callback_url: str = ""
    # Signs unsubscribe tokens and webhook URLs. Set it in production; the default only
    # suits a machine whose links never leave it.
    secret: str = "consentry-development-secret"
    # Secrets links were signed with before a rotation, newest first: links and tokens
    # signed with one of them still verify; nothing new is signed with them.
    retired_secrets: tuple[str, ...] = ()
    # The number individual replies are texted from when --from is not given.
    sms_from: str = "+15550001111"
    batch_size: int = 1000
    # Transient delivery failures: attempts per message and the first backoff (doubling,
    # with full jitter) before a delivery is left pending for `campaign resume`.
    # Ask Twilio to report delivery to `{public_url}/webhooks/twilio/{tenant}/status`
    # (`consentry serve`); off where nothing serves that URL (benchmarks).
    status_callbacks: bool = True
    # Where senders write one JSON line per batch (engine/send/batch_log.py): "-" stderr,
    # "off" nowhere, anything else a file appended to.
    batch_log: str = "-"
    retry_attempts: int = 5
    retry_base_s: float = 0.5
    # How long a runner's claim on a delivery holds without renewal (engine/send/claims.py):
    # the most a killed or frozen runner's messages wait before another runner reclaims them.
    claim_ttl_s: float = 30.0
    # Worker processes that DKIM-sign a campaign's email (engine/send/dkim.py); 0: one per CPU.
    dkim_processes: int = 0
    # The relay beyond its URL: whom to trust, who we are, how long to wait (RelaySettings).
    smtp_ca_file: str | None = None
    smtp_ca_dir: str | None = None
    smtp_client_cert: str | None = None
    smtp_client_key: str | None = None
    smtp_ehlo_name: str | None = None
    smtp_connect_timeout_s: float = 10.0
    smtp_command_timeout_s: float = 30.0
    # This many recipients in a row refused with the same 5.7.x status stop the campaign
    # (a relay refusing us, not them); 0 never stops (docs/sending.md, "Relay faults").
    smtp_policy_stop_after: int = 5
    # Parsed from the fields above when the settings are made, so a bad value fails at once.
    relay: RelaySettings = field(init=False, repr=False, compare=False)
    # Outbound webhooks (engine/webhooks/, docs/api.md "Webhooks out"): POST attempts per
    # event before it is marked failed, the first retry delay (doubling, jittered, capped),
    # one POST's timeout, how long a dispatcher's claim on a message holds (a killed
    # dispatcher's messages are retried after it), POSTs in flight, and whether `serve`
    # runs a dispatcher.
    webhook_attempts: int = 15
    webhook_retry_base_s: float = 5.0
    webhook_retry_cap_s: float = 3600.0
    webhook_timeout_s: float = 10.0
    webhook_claim_ttl_s: float = 60.0
    webhook_concurrency: int = 16
    webhook_dispatch: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "relay", RelaySettings.parse(
            self.smtp_url, ca_file=self.smtp_ca_file, ca_dir=self.smtp_ca_dir, client_cert=self.smtp_client_cert,
            client_key=self.smtp_client_key, ehlo_name=self.smtp_ehlo_name,
            connect_timeout_s=self.smtp_connect_timeout_s, command_timeout_s=self.smtp_command_timeout_s,
        ))
    # `serve` against slow clients (engine/api/connections.py): open connections at most
    # (lowered to fit the open-file limit), and how long a request's headers and its body
    # may take to arrive.
    http_max_connections: int = 4096
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    # Twilio webhooks (engine/api/webhook_writer.py, docs/operations.md "Twilio webhooks at
    # the send rate"): group-commit their writes (one transaction for every webhook that
    # arrived while the last one ran; off: a transaction per request, the old way), and how
    # long a failure status for a MessageSid no delivery carries yet is held (the callback
    # can outrun the sender's commit of that message) before it is answered as unknown.
    twilio_group_commit: bool = True
    twilio_status_wait_s: float = 5.0

    @property
    def link_secrets(self) -> tuple[bytes, ...]:
        """The keys a link or token may be signed with, current first (engine/render/tokens.py)."""
        return tuple(secret.encode() for secret in (self.secret, *self.retired_secrets))

    @property
    def status_callback_base(self) -> str:
        """The base URL status callbacks are posted to (CONSENTRY_CALLBACK_URL, else the public URL)."""
        return self.callback_url or self.public_url

    def unsafe_off_loopback(self, host: str | None = None) -> list[str]:
        """The settings that still have their public defaults, when this process can be
        reached from off this machine or publishes links that are: `host` is the address
        a server listens on (None for a process that only sends: `worker`, `campaign send`).
        The defaults are in the source code: with them anyone could forge an unsubscribe
        link (CONSENTRY_SECRET) or a Twilio webhook (TWILIO_AUTH_TOKEN, for a server).
        Empty when loopback only, or all are set."""
        published = urlsplit(self.public_url).hostname or ""
        if (host is None or _is_loopback(host)) and _is_loopback(published):
            return []
        d = Settings()
        checks = [("CONSENTRY_SECRET", self.secret, d.secret)]
        if host is not None:
            checks = [("CONSENTRY_PUBLIC_URL", self.public_url, d.public_url), *checks,
                      ("TWILIO_AUTH_TOKEN", self.twilio_auth_token, d.twilio_auth_token)]
        unsafe = [name for name, value, default in checks if value == default or not value]
        # A retired secret still verifies links: the public default must not be one.
        if d.secret in self.retired_secrets:
            unsafe.append("CONSENTRY_SECRETS_RETIRED")
        return unsafe

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        if overrides.get("smtp_url"):
            # --smtp-url replaces the variable before it is parsed: a bad CONSENTRY_SMTP_URL
            # must not stop a command that was told to use another relay.
            env = {**env, SMTP_URL_VARIABLE: overrides.pop("smtp_url")}
        d = cls()
        settings = cls(
            database_url=env.get("CONSENTRY_DATABASE_URL", DEFAULT_URL),
            redis_url=env.get("CONSENTRY_REDIS_URL", d.redis_url),
            launch_backend=_launch_backend(env),
            smtp_url=env.get("CONSENTRY_SMTP_URL", d.smtp_url),
            twilio_url=env.get("CONSENTRY_TWILIO_URL", d.twilio_url),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID", d.twilio_account_sid),
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", d.twilio_auth_token),
            public_url=env.get("CONSENTRY_PUBLIC_URL", d.public_url).rstrip("/"),
            callback_url=env.get("CONSENTRY_CALLBACK_URL", "").rstrip("/"),
            batch_log=env.get("CONSENTRY_BATCH_LOG", d.batch_log).strip() or d.batch_log,
            secret=env.get("CONSENTRY_SECRET", d.secret),
            retired_secrets=tuple(
                part.strip() for part in env.get("CONSENTRY_SECRETS_RETIRED", "").split(",") if part.strip()
            ),
            sms_from=env.get("CONSENTRY_SMS_FROM", d.sms_from),
            status_callbacks=env.get("CONSENTRY_STATUS_CALLBACKS", "on").lower() not in ("off", "false", "0", "no"),
            retry_attempts=_number(env, "CONSENTRY_RETRY_ATTEMPTS", d.retry_attempts, int),
            retry_base_s=_number(env, "CONSENTRY_RETRY_BASE_S", d.retry_base_s, float),
            claim_ttl_s=_number(env, "CONSENTRY_CLAIM_TTL_S", d.claim_ttl_s, float),
            dkim_processes=_number(env, "CONSENTRY_DKIM_PROCESSES", d.dkim_processes or 1, int)
            if env.get("CONSENTRY_DKIM_PROCESSES") else d.dkim_processes,
            smtp_ca_file=env.get("CONSENTRY_SMTP_CA_FILE") or None,
            smtp_ca_dir=env.get("CONSENTRY_SMTP_CA_DIR") or None,
            smtp_client_cert=env.get("CONSENTRY_SMTP_CLIENT_CERT") or None,
            smtp_client_key=env.get("CONSENTRY_SMTP_CLIENT_KEY") or None,
            smtp_ehlo_name=env.get("CONSENTRY_SMTP_EHLO_NAME") or None,
            smtp_connect_timeout_s=_number(env, "CONSENTRY_SMTP_CONNECT_TIMEOUT_S", d.smtp_connect_timeout_s, float),
            smtp_command_timeout_s=_number(env, "CONSENTRY_SMTP_COMMAND_TIMEOUT_S", d.smtp_command_timeout_s, float),
            smtp_policy_stop_after=_count(env, "CONSENTRY_SMTP_POLICY_STOP_AFTER", d.smtp_policy_stop_after),
            http_max_connections=_number(env, "CONSENTRY_HTTP_MAX_CONNECTIONS", d.http_max_connections, int),
            http_header_timeout_s=_number(env, "CONSENTRY_HTTP_HEADER_TIMEOUT_S", d.http_header_timeout_s, float),
            http_body_timeout_s=_number(env, "CONSENTRY_HTTP_BODY_TIMEOUT_S", d.http_body_timeout_s, float),
            twilio_group_commit=env.get("CONSENTRY_TWILIO_GROUP_COMMIT", "on").lower() not in ("off", "false", "0", "no"),
            twilio_status_wait_s=_number(env, "CONSENTRY_TWILIO_STATUS_WAIT_S", d.twilio_status_wait_s, float),
            webhook_attempts=_number(env, "CONSENTRY_WEBHOOK_ATTEMPTS", d.webhook_attempts, int),
            webhook_retry_base_s=_number(env, "CONSENTRY_WEBHOOK_RETRY_BASE_S", d.webhook_retry_base_s, float),
            webhook_retry_cap_s=_number(env, "CONSENTRY_WEBHOOK_RETRY_CAP_S", d.webhook_retry_cap_s, float),
            webhook_timeout_s=_number(env, "CONSENTRY_WEBHOOK_TIMEOUT_S", d.webhook_timeout_s, float),
            webhook_claim_ttl_s=_number(env, "CONSENTRY_WEBHOOK_CLAIM_TTL_S", d.webhook_claim_ttl_s, float),
            webhook_concurrency=_number(env, "CONSENTRY_WEBHOOK_CONCURRENCY", d.webhook_concurrency, int),
            webhook_dispatch=env.get("CONSENTRY_WEBHOOK_DISPATCH", "on").lower() not in ("off", "false", "0", "no"),
        )
        given = {key: value for key, value in overrides.items() if value is not None}
        return replace(settings, **given) if given else settings


LAUNCH_BACKENDS = ("inline", "arq")


def _launch_backend(env: Mapping[str, str]) -> str:
    value = env.get("CONSENTRY_LAUNCH_BACKEND") or ("arq" if env.get("CONSENTRY_REDIS_URL") else "inline")
    if value not in LAUNCH_BACKENDS:
        from engine.errors import InputError

        raise InputError(f"{value!r} is not one of {', '.join(LAUNCH_BACKENDS)}", field="CONSENTRY_LAUNCH_BACKEND")
    return value


class TlsMode(StrEnum):
    """How the connection to the relay is encrypted."""

    STARTTLS = "starttls"  # connect in clear, upgrade before anything else (port 587/25)
    IMPLICIT = "implicit"  # TLS from the first byte: smtps:// (port 465)
    NONE = "none"  # clear text: loopback only (the capture server), unless marked insecure


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EHLO_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\]|\[IPv6:[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The SMTP relay: where and as whom (the URL), whom to trust, who we say we are, and
    how long to wait. Immutable and hashable: the transport builds its TLS context once
    per distinct value (engine/transports/smtp.py)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsMode = TlsMode.NONE
    ca_file: str | None = None
    ca_dir: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    ehlo_name: str | None = None
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 30.0

    @property
    def trust(self) -> str:
        """Whom the relay's certificate must chain to, in words (for error messages)."""
        sources = [f"CA file {self.ca_file}"] if self.ca_file else []
        sources += [f"CA directory {self.ca_dir}"] if self.ca_dir else []
        return " and ".join(sources) or "the system's trust store; no CONSENTRY_SMTP_CA_FILE set"

    @classmethod
    def parse(cls, url: str, *, variable: str = SMTP_URL_VARIABLE, **options: Any) -> RelaySettings:
        """`smtp://[user:pass@]host[:port][?starttls=true|false][&insecure=true]` or
        `smtps://...`, plus the options of the other CONSENTRY_SMTP_* variables.

        TLS: `smtps://` is implicit TLS; `starttls=true` requires STARTTLS; `starttls=false`
        is clear text. Without the parameter: clear text to a loopback host (the capture
        server), STARTTLS required to any other. Clear text to a non-loopback host is
        refused unless the URL says `insecure=true` (a private network you own, such as
        the compose file's capture server): it would send the password and every message
        readable by anyone on the path.
        """
        def bad(message: str, name: str = variable) -> Exception:
            from engine.errors import InputError

            return InputError(message, field=name)

        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise bad(f"{_redacted(url)!r}: expected smtp://[user:pass@]host[:port][?starttls=true] or smtps://...")
        try:
            query = {key.lower(): values[-1].lower() for key, values in parse_qs(parts.query, strict_parsing=bool(parts.query)).items()}
        except ValueError:
            raise bad(f"{_redacted(url)!r}: bad query string {parts.query!r}") from None
        unknown = set(query) - {"starttls", "insecure"}
        if unknown:
            raise bad(f"{_redacted(url)!r}: unknown parameter {sorted(unknown)[0]!r} (known: starttls, insecure)")
        flags: dict[str, bool] = {}
        for name, value in query.items():
            if value not in _TRUE | _FALSE:
                raise bad(f"{_redacted(url)!r}: {name} must be true or false, not {value!r}")
            flags[name] = value in _TRUE
        host = parts.hostname
        loopback = _is_loopback(host)
        if parts.scheme == "smtps":
            if flags.get("starttls"):
                raise bad(f"{_redacted(url)!r}: smtps:// is already TLS; drop starttls=true")
            tls = TlsMode.IMPLICIT
        elif "starttls" in flags:
            tls = TlsMode.STARTTLS if flags["starttls"] else TlsMode.NONE
        else:
            tls = TlsMode.NONE if loopback else TlsMode.STARTTLS
        if tls == TlsMode.NONE and not loopback and not flags.get("insecure"):
            raise bad(
                f"{_redacted(url)!r}: no TLS to {host}, which is not a loopback address: the password and every "
                "message would cross the network readable. Use starttls=true or smtps://, or add insecure=true "
                "on a private network you own"
            )
        try:
            port = parts.port
        except ValueError:
            raise bad(f"{_redacted(url)!r}: bad port") from None
        if port is None:
            port = {TlsMode.IMPLICIT: 465, TlsMode.STARTTLS: 587}.get(tls, 25)
        relay = cls(
            host=host, port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls, **options,
        )
        relay._check()
        return relay

    def _check(self) -> None:
        from engine.errors import InputError

        if self.tls == TlsMode.NONE:
            for name, value in (("CONSENTRY_SMTP_CA_FILE", self.ca_file), ("CONSENTRY_SMTP_CA_DIR", self.ca_dir),
                                ("CONSENTRY_SMTP_CLIENT_CERT", self.client_cert)):
                if value:
                    raise InputError(f"set, but {SMTP_URL_VARIABLE} uses no TLS (add starttls=true, or use smtps://)",
                                     field=name)
        if self.client_key and not self.client_cert:
            raise InputError("a client key needs its certificate in CONSENTRY_SMTP_CLIENT_CERT", field="CONSENTRY_SMTP_CLIENT_KEY")
        if self.ehlo_name is not None and not (len(self.ehlo_name) <= 255 and _EHLO_NAME.fullmatch(self.ehlo_name)):
            raise InputError(f"{self.ehlo_name!r} is not a host name (relay.example.com) or an address literal "
                             "([192.0.2.1])", field="CONSENTRY_SMTP_EHLO_NAME")


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: reachable from wherever it resolves


def _count(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key)
    if value is None or value == "":
        return default
    if not value.strip().isdigit():
        from engine.errors import InputError

        raise InputError(f"{value!r} is not a whole number (0 or more)", field=key)
    return int(value)


def _number(env: Mapping[str, str], key: str, default: N, kind: type[N]) -> N:
    value = env.get(key)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except ValueError:
        from engine.errors import InputError

        raise InputError(f"{value!r} is not a number", field=key) from None
    if number <= 0:
        from engine.errors import InputError

        raise InputError(f"{value!r} must be positive", field=key)
    return number
