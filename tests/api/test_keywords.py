"""SMS keyword classification: the whole message is the keyword, as carriers read it."""

from __future__ import annotations

import pytest

from engine.api.keywords import Keyword, classify

CASES = [
    ("stop", Keyword.OPT_OUT),
    (" Stop ", Keyword.OPT_OUT),
    ("STOP.", Keyword.OPT_OUT),
    ("Stop!!!", Keyword.OPT_OUT),
    ("unsubscribe", Keyword.OPT_OUT),
    ("StopAll", Keyword.OPT_OUT),
    ("stop all", Keyword.OPT_OUT),
    ("Cancel", Keyword.OPT_OUT),
    ("end", Keyword.OPT_OUT),
    ("QUIT", Keyword.OPT_OUT),
    ("revoke", Keyword.OPT_OUT),
    ("opt-out", Keyword.OPT_OUT),
    ("Opt out", Keyword.OPT_OUT),
    ("ＳＴＯＰ", Keyword.OPT_OUT),  # full-width letters, as some phones send them
    ("start", Keyword.RESUBSCRIBE),
    ("Unstop", Keyword.RESUBSCRIBE),
    ("yes", Keyword.CONFIRM),
    ("Yes!", Keyword.CONFIRM),
    ("help", Keyword.HELP),
    ("INFO?", Keyword.HELP),
    ("please stop texting me", Keyword.MENTIONS_OPT_OUT),
    ("I'll stop by Saturday", Keyword.MENTIONS_OPT_OUT),
    ("opt me out, opt out", Keyword.MENTIONS_OPT_OUT),
    ("yes please", Keyword.NONE),
    ("Is the Civic still available?", Keyword.NONE),
    ("I will send it", Keyword.NONE),  # "end" only as a word of its own
    ("", Keyword.NONE),
    ("   ", Keyword.NONE),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_classify(body: str, expected: Keyword) -> None:
    assert classify(body) is expected
