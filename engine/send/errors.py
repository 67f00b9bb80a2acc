"""Why a send stopped before its campaign was done, with what finishes it."""

from __future__ import annotations

from engine.errors import ConsentryError

__all__ = ["DatabaseUnreachable", "RateLimitUnavailable"]


class DatabaseUnreachable(ConsentryError):
    """The database went out of reach in the middle of a send. Nothing is lost: recipients
    not sent yet stay `pending`; those whose messages were on the wire stay claimed and, once
    their claims lapse, are reconciled (SMS) or resent with the same Message-ID (email) by
    the `resume` this error names."""

    def __init__(self, campaign: str, tenant: str, cause: BaseException) -> None:
        self.campaign = campaign
        self.tenant = tenant
        self.resume_command = f"consentry campaign resume {campaign} --tenant {tenant}"
        detail = str(getattr(cause, "orig", None) or cause).splitlines()[0] if str(cause) else type(cause).__name__
        super().__init__(
            f"campaign {campaign} stopped: the database is unreachable ({detail}); recipients not sent yet "
            f"stay pending. When the database is back, run `{self.resume_command}`"
        )


class RateLimitUnavailable(ConsentryError):
    """The shared rate limit (Redis) could not be asked for a slot. The run stops instead of
    sending unpaced: a relay or a provider number over its rate rejects or filters what it
    gets, and N workers each sending unpaced would exceed it N times over. Rows claimed and
    not sent go back to `pending`; the arq job is retried (engine/backends/arq_backend.py)."""

    def __init__(self, key: str, cause: BaseException) -> None:
        self.key = key
        super().__init__(f"the shared rate limit of {key} is unreachable ({cause or type(cause).__name__}); nothing more is sent unpaced")
