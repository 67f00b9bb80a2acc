"""Settings, read once from the environment (and command-line overrides) into a frozen object.

This is the only module that reads os.environ.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

DEFAULT_URL = "sqlite+aiosqlite:///./consentry.db"

N = TypeVar("N", int, float)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_URL
    redis_url: str = "redis://127.0.0.1:6379/0"
    smtp_url: str = "smtp://127.0.0.1:1025"
    twilio_url: str = "http://127.0.0.1:8025"
    twilio_account_sid: str = "ACconsentrylocal00000000000000000"
    twilio_auth_token: str = "consentry-local-token"
    public_url: str = "http://127.0.0.1:8080"
    # Signs unsubscribe tokens and webhook URLs. Set it in production; the default only
    # suits a machine whose links never leave it.
    secret: str = "consentry-development-secret"
    # The number individual replies are texted from when --from is not given.
    sms_from: str = "+15550001111"
    batch_size: int = 1000
    # Transient delivery failures: attempts per message and the first backoff (doubling,
    # with full jitter) before a delivery is left pending for `campaign resume`.
    # Ask Twilio to report delivery to `{public_url}/webhooks/twilio/{tenant}/status`
    # (`consentry serve`); off where nothing serves that URL (benchmarks).
    status_callbacks: bool = True
    retry_attempts: int = 5
    retry_base_s: float = 0.5
    # How long a runner's claim on a delivery holds without renewal (engine/send/claims.py):
    # the most a killed or frozen runner's messages wait before another runner reclaims them.
    claim_ttl_s: float = 30.0
    # Worker processes that DKIM-sign a campaign's email (engine/send/dkim.py); 0: one per CPU.
    dkim_processes: int = 0
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

    def unsafe_off_loopback(self, host: str) -> list[str]:
        """The settings that still have their public defaults, when this service can be
        reached from off this machine (listening on, or published at, a non-loopback
        address). Their defaults are in the source code: with them anyone could forge an
        unsubscribe link or a Twilio webhook. Empty when loopback only, or all are set."""
        published = urlsplit(self.public_url).hostname or ""
        if _is_loopback(host) and _is_loopback(published):
            return []
        d = Settings()
        return [
            name for name, value, default in (
                ("CONSENTRY_PUBLIC_URL", self.public_url, d.public_url),
                ("CONSENTRY_SECRET", self.secret, d.secret),
                ("TWILIO_AUTH_TOKEN", self.twilio_auth_token, d.twilio_auth_token),
            )
            if value == default or not value
        ]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        d = cls()
        settings = cls(
            database_url=env.get("CONSENTRY_DATABASE_URL", DEFAULT_URL),
            redis_url=env.get("CONSENTRY_REDIS_URL", d.redis_url),
            smtp_url=env.get("CONSENTRY_SMTP_URL", d.smtp_url),
            twilio_url=env.get("CONSENTRY_TWILIO_URL", d.twilio_url),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID", d.twilio_account_sid),
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", d.twilio_auth_token),
            public_url=env.get("CONSENTRY_PUBLIC_URL", d.public_url).rstrip("/"),
            secret=env.get("CONSENTRY_SECRET", d.secret),
            sms_from=env.get("CONSENTRY_SMS_FROM", d.sms_from),
            status_callbacks=env.get("CONSENTRY_STATUS_CALLBACKS", "on").lower() not in ("off", "false", "0", "no"),
            retry_attempts=_number(env, "CONSENTRY_RETRY_ATTEMPTS", d.retry_attempts, int),
            retry_base_s=_number(env, "CONSENTRY_RETRY_BASE_S", d.retry_base_s, float),
            claim_ttl_s=_number(env, "CONSENTRY_CLAIM_TTL_S", d.claim_ttl_s, float),
            dkim_processes=_number(env, "CONSENTRY_DKIM_PROCESSES", d.dkim_processes or 1, int)
            if env.get("CONSENTRY_DKIM_PROCESSES") else d.dkim_processes,
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


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: reachable from wherever it resolves


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
