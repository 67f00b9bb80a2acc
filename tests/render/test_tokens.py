"""Unsubscribe tokens: compact, URL-safe, tamper-evident."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.render import (
    TokenClaims,
    preferences_url,
    sign_token,
    unsubscribe_url,
    verify_token,
)

SECRET = b"k" * 32


def test_round_trip() -> None:
    token = sign_token(SECRET, 3, 11, 123456, "email")
    assert verify_token(SECRET, token) == TokenClaims(3, 11, 123456, "email")


def test_individual_message_has_no_campaign() -> None:
    token = sign_token(SECRET, 3, None, 9, "sms")
    assert verify_token(SECRET, token) == TokenClaims(3, None, 9, "sms")
    assert verify_token(SECRET, sign_token(SECRET, 3, 0, 9, "sms")).campaign_id == 0


def test_compact_and_url_safe() -> None:
    token = sign_token(SECRET, 2**31, 2**31, 2**40, "email")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(token) <= 48
    # Ids of a real deployment: about 30 characters.
    assert len(sign_token(SECRET, 3, 1_500, 40_000_000, "email")) <= 36


def test_wrong_secret_is_refused() -> None:
    assert verify_token(b"other", sign_token(SECRET, 1, 2, 3, "email")) is None


def test_every_single_character_change_is_refused() -> None:
    token = sign_token(SECRET, 1, 2, 3, "email")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in range(len(token)):
        for char in alphabet:
            if char != token[index]:
                tampered = token[:index] + char + token[index + 1:]
                assert verify_token(SECRET, tampered) is None, tampered


def test_changed_claims_with_the_old_mac_are_refused() -> None:
    token = sign_token(SECRET, 1, 2, 3, "email")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-17] ^= 0x01  # the contact id, last byte before the MAC
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert verify_token(SECRET, forged) is None


@pytest.mark.parametrize("junk", ["", "abc", "!" * 30, "A" * 500, "AQEB" + "=" * 30, None, 42])
def test_malformed_tokens_are_refused(junk: object) -> None:
    assert verify_token(SECRET, junk) is None  # type: ignore[arg-type]


def test_truncated_and_extended_tokens_are_refused() -> None:
    token = sign_token(SECRET, 1, 2, 3, "email")
    assert verify_token(SECRET, token[:-1]) is None
    assert verify_token(SECRET, token + "A") is None


def test_rotation_accepts_old_and_new_secrets() -> None:
    old = sign_token(b"old", 1, 2, 3, "email")
    new = sign_token(b"new", 1, 2, 3, "email")
    assert verify_token([b"new", b"old"], old) == verify_token([b"new", b"old"], new)
    assert verify_token([b"new"], old) is None


@pytest.mark.parametrize(("args", "error"), [
    ((b"", 1, 2, 3, "email"), "empty"),
    ((SECRET, -1, 2, 3, "email"), "non-negative"),
    ((SECRET, 1, 2, 3, "pigeon"), "channel"),
    ((SECRET, "acme", 2, 3, "email"), "non-negative"),
])
def test_bad_claims_are_refused_when_signing(args: tuple, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        sign_token(*args)


@given(
    tenant=st.integers(0, 2**63),
    campaign=st.one_of(st.none(), st.integers(0, 2**62)),
    contact=st.integers(0, 2**63),
    channel=st.sampled_from(["email", "sms", "voice", "letter", "social", "*"]),
)
def test_any_claims_round_trip(tenant: int, campaign: int | None, contact: int,
                               channel: str) -> None:
    token = sign_token(SECRET, tenant, campaign, contact, channel)
    assert verify_token(SECRET, token) == TokenClaims(tenant, campaign, contact, channel)


def test_urls() -> None:
    assert unsubscribe_url("https://x.example/", "T0K") == "https://x.example/u/T0K"
    assert preferences_url("https://x.example", "T0K") == "https://x.example/p/T0K"


@given(st.binary(max_size=48))
def test_the_return_path_base32_is_the_standard_one(data: bytes) -> None:
    # Bounces carry these tokens back; whatever encodes them must be exactly RFC 4648 base32.
    from engine.render.return_path import b32_lower

    assert b32_lower(data) == base64.b32encode(data).decode("ascii").rstrip("=").lower()
