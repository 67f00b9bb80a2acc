"""SMS keyword classification: a whole-message keyword as carriers read it, else a revocation in
any words (the corpus is tests/api/test_revocation_corpus.py)."""

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
    # An opt-out word inside a longer reply revokes (it used to record nothing)...
    ("please stop texting me", Keyword.OPT_OUT),
    ("opt me out, opt out", Keyword.OPT_OUT),
    ("yes please stop", Keyword.OPT_OUT),  # only a whole-message YES confirms
    # ...unless an idiom says it is about something else.
    ("I'll stop by Saturday", Keyword.NONE),
    ("please start", Keyword.NONE),  # START, YES, HELP only as the whole message
    ("yes please", Keyword.NONE),
    ("Is the Civic still available?", Keyword.NONE),
    ("I will send it", Keyword.NONE),  # "end" only as a word of its own
    ("", Keyword.NONE),
    ("   ", Keyword.NONE),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_classify(body: str, expected: Keyword) -> None:
    assert classify(body) is expected
