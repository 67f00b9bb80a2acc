"""SMS keywords: what an inbound text asks for (CTIA / carrier conventions).

Pure: text in, a `Keyword` out; no IO. A message is a keyword only when the whole message
is one, compared case-insensitively with whitespace and punctuation ignored (`" Stop "`,
`"STOP."`, `"opt-out"`, `"Stop all"` all count), because that is what carriers and Twilio
act on. A longer message that merely contains an opt-out word ("please stop texting me",
but also "I'll stop by Saturday") is `MENTIONS_OPT_OUT`: the webhook records nothing for it
and answers with how to opt out (docs/api.md explains why).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

__all__ = ["OPT_OUT_WORDS", "Keyword", "classify"]


class Keyword(StrEnum):
    OPT_OUT = "opt_out"  # STOP and friends: block texting this number
    RESUBSCRIBE = "resubscribe"  # START, UNSTOP: lift the block
    CONFIRM = "confirm"  # YES: lift the block and grant consent to text (the SMS opt-in)
    HELP = "help"  # HELP, INFO: who we are and how to stop; nothing recorded
    MENTIONS_OPT_OUT = "mentions_opt_out"  # an opt-out word inside a longer message
    NONE = "none"  # anything else


# The industry-standard opt-out keywords (Twilio's default set plus REVOKE and OPTOUT,
# which the FCC's 2024 revocation rule names).
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})

_KEYWORDS: dict[str, Keyword] = {
    **{word: Keyword.OPT_OUT for word in OPT_OUT_WORDS},
    "START": Keyword.RESUBSCRIBE,
    "UNSTOP": Keyword.RESUBSCRIBE,
    "YES": Keyword.CONFIRM,
    "HELP": Keyword.HELP,
    "INFO": Keyword.HELP,
}
# Words of a longer message, for "does it mention opting out"; "opt out" is two words.
_WORD = re.compile(r"[^\W_]+")


def _letters(text: str) -> str:
    # NFKC folds full-width and other compatibility forms ("ＳＴＯＰ") to plain letters.
    folded = unicodedata.normalize("NFKC", text).upper()
    return "".join(ch for ch in folded if ch.isalnum())


def classify(body: str) -> Keyword:
    """The keyword an inbound message is, if the whole message is one."""
    keyword = _KEYWORDS.get(_letters(body))
    if keyword is not None:
        return keyword
    words = [_letters(word) for word in _WORD.findall(unicodedata.normalize("NFKC", body))]
    pairs = {a + b for a, b in zip(words, words[1:], strict=False)}
    if OPT_OUT_WORDS.intersection(words) or "OPTOUT" in pairs:
        return Keyword.MENTIONS_OPT_OUT
    return Keyword.NONE
