"""SMS keywords and plain-language revocation: what an inbound text asks for.

Pure: text in, a `Keyword` out; no IO, no clock. Two readings, in this order:

1. **The whole message is a keyword** (`_KEYWORDS`), compared with case, spaces,
   punctuation and compatibility forms ("ＳＴＯＰ") ignored, as carriers and Twilio read
   keywords: STOP and friends, START / UNSTOP, YES, HELP / INFO. Only this reading can
   resubscribe, confirm or ask for help: "yes please stop" is not a YES.
2. **Anything longer is read for a revocation** with the table `RULES`. Since 11 April 2025
   the FCC's TCPA revocation order lets consent be revoked "by any
   reasonable means", and a reply using "stop", "quit", "end", "revoke", "opt out", "cancel"
   or "unsubscribe" revokes per se; CTIA asks senders to honour natural-language opt-outs
   too. So the per-se words count as whole words anywhere in a reply, and so do phrasings
   that use none of them ("don't text me", "take me off your list").

The table is read in two passes over the normalised text (`normalize`):

- rows whose outcome is `Keyword.NONE` are *idioms* in which a per-se word does not speak
  about messages ("I'll stop by Saturday", "cancel my appointment", "end of day"); the
  words they match are blanked out, and nothing else about the message changes;
- rows whose outcome is `Keyword.OPT_OUT` are *revocations*: if any matches what is left,
  the message is a revocation.

Idioms are few and narrow on purpose: where the words are ambiguous ("can't stop thinking
about that truck", "I need to cancel"), the safe side is to honour the revocation, and the
confirmation text tells the customer how to opt back in (reply START). docs/api.md has the
hard cases and the corpus figures (tests/api/test_revocation_corpus.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["OPT_OUT_WORDS", "RULES", "Keyword", "Rule", "classify", "normalize"]


class Keyword(StrEnum):
    OPT_OUT = "opt_out"  # STOP, or any reasonable revocation: block texting this number
    RESUBSCRIBE = "resubscribe"  # START, UNSTOP: lift the block
    CONFIRM = "confirm"  # YES: lift the block and grant consent to text (the SMS opt-in)
    HELP = "help"  # HELP, INFO: who we are and how to stop; nothing recorded
    NONE = "none"  # anything else (and, in `RULES`, an idiom that is not a revocation)


# The industry-standard opt-out keywords (Twilio's default set plus REVOKE and OPTOUT,
# which the FCC's 2024 revocation rule names), as whole messages.
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})

_KEYWORDS: dict[str, Keyword] = {
    **{word: Keyword.OPT_OUT for word in OPT_OUT_WORDS},
    "START": Keyword.RESUBSCRIBE,
    "UNSTOP": Keyword.RESUBSCRIBE,
    "YES": Keyword.CONFIRM,
    "HELP": Keyword.HELP,
    "INFO": Keyword.HELP,
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: a regular expression over `normalize`d text, what a match
    means (`OPT_OUT`: a revocation; `NONE`: an idiom, blanked out before revocations are
    looked for), and why."""

    pattern: re.Pattern[str]
    outcome: Keyword
    why: str


def _rule(pattern: str, outcome: Keyword, why: str) -> Rule:
    return Rule(re.compile(pattern), outcome, why)


# What a customer calls the texts, and who they are about.
_MESSAGES = (
    r"(?:texts?|txts?|texting|messages?|messaging|msgs?|sms|spam|marketing|promotions?|promos?|offers|ads|deals"
    r"|notifications|alerts|updates|calls|emails?)"
)
_ME = r"(?:me|us|this number|my (?:phone |cell )?(?:number|phone|cell|info|information|contact|details|data|name))"
_LIST = r"(?:list|lists|mailing list|contact list|texting list|database|system|contacts)"

N, R = Keyword.NONE, Keyword.OPT_OUT
# Read top to bottom within each outcome; all NONE rows apply before any OPT_OUT row.
RULES: tuple[Rule, ...] = (
    # --- idioms: a per-se word that does not speak about messages --------------------------
    _rule(r"\bstop (?:by|in|over|into|through)\b", N, "'stop by / in / over' is visiting, the opposite of leaving"),
    _rule(r"\b(?:bus|pit|truck|rest|one|first|next|last) stop\b|\bstop (?:sign|signs|light|lights|and go)\b",
          N, "a stop as a place or a road sign"),  # fmt: skip
    _rule(r"\b(?:auto|start) stop\b|\bstop start\b|\bnon stop\b", N, "a car feature (auto start-stop) or 'non-stop'"),
    _rule(r"\bcancel (?:\w+ ){0,2}?(?:appointments?|appts?|order|reservation|test drive|visit|meeting|booking|deposit"
          r"|trade in|credit app|application|financing|warranty)\b",
          N, "cancelling a visit or a deal is business with the dealer, not about its texts"),  # fmt: skip
    _rule(r"\bend of\b|\b(?:in|at|on|by|the) (?:the )?end\b|\b(?:front|rear|back|high|low|top|dead|tail|year|month|week)"
          r" end\b|\b(?:my|your|our|their) end\b",
          N, "'end' as a noun: end of day, rear end, high end, on my end"),  # fmt: skip
    _rule(r"\b(?:when|what time|what day|does|do|will|did)\b (?:\w+ ){0,3}?(?:sale|offer|deal|promotion|promo|lease"
          r"|warranty|event|special|rebate|incentive|financing|contract|loan)s? end\b",
          N, "a question about when an offer or a contract ends"),  # fmt: skip
    _rule(r"\bquit (?:my |his |her |their |our |the |a )?(?:job|work|smoking|vaping|drinking|gym|company|position)\b"
          r"|\bquit on (?:me|us|him|her)\b|\b(?:car|truck|engine|battery|transmission|motor|ac|starter|alternator)"
          r" (?:just |already |finally )?quit\b",
          N, "quitting a job or a habit, or a car that quit on its owner"),  # fmt: skip
    # --- revocations ---------------------------------------------------------------------
    _rule(r"\b(?:stop|stopall|unsubscribe|cancel|end|quit|revoke|opt out|optout)\b",
          R, "FCC per-se words and Twilio's opt-out set, as whole words anywhere in a reply"),  # fmt: skip
    _rule(r"\b(?:stopp+|stahp|stp|unsub|unsuscribe|unsubcribe|unsubscibe|unsubscribed|unsubscribing)\b"
          r"|\bopt(?:ing|ed)? (?:me )?out\b",
          R, "common misspellings and inflections of the per-se words"),  # fmt: skip
    _rule(r"\b(?:dont|do not|never)(?: ever)? (?:(?:call|email|contact) (?:or|and|nor) )?"
          r"(?:text|txt|texting|message|messaging|msg|sms|contact|spam|reach out)\b"
          r"|\bno need to (?:text|message|contact|reach out to|call) (?:me|us)\b"
          r"|\b(?:dont|do not|never) (?:call|email|bother|hit) (?:me|us)\b",
          R, "'don't text me', 'do not contact', 'never message me again'"),  # fmt: skip
    _rule(rf"\bno more {_MESSAGES}\b|\bno more(?: please| pls| thanks| thank you)?(?: \.)*$|\btoo many {_MESSAGES}\b"
          rf"|^(?:\. )*enough(?: already)?(?: \.)*$|\benough (?:with )?(?:the |these |your |ur )?{_MESSAGES}\b",
          R, "'no more messages', 'too many texts', a bare 'enough'"),  # fmt: skip
    _rule(rf"\b(?:remove|delete|erase) {_ME}\b|\b(?:please |pls |kindly )?remove(?: \.)*$",
          R, "'remove me', 'delete my number'"),  # fmt: skip
    _rule(rf"\b(?:take|cross|scratch|knock|get) {_ME} off\b|\b(?:take|remove) {_ME} out of\b"
          rf"|\boff (?:your|the|ur|this|all|these|of your|of the) (?:\w+ )?{_LIST}\b(?! price)",
          R, "'take me off your list', 'get me off this list'"),  # fmt: skip
    _rule(r"\b(?:lose|forget|erase|delete|toss) (?:my|this) (?:phone |cell )?(?:number|num|cell|contact|info)\b",
          R, "'lose my number'"),  # fmt: skip
    _rule(r"\bleave me (?:alone|be)\b|\b(?:go away|fuck off|f off|piss off|get lost|buzz off|bugger off|shove off)\b"
          r"|\bharass\w*",
          R, "'leave me alone', ruder ways of saying go away, and calling the texts harassment"),  # fmt: skip
    _rule(r"\bwrong (?:number|person|phone|guy|girl|lady|man|contact)\b"
          r"|\bnot (?:the right|the correct) (?:number|person)\b"
          r"|\b(?:this|that) (?:number|phone) (?:is not|isnt|is no longer) (?:mine|my)\b|\bnot my (?:number|phone)\b",
          R, "a wrong number never consented; the block is on the number, which is exactly what it needs"),  # fmt: skip
    _rule(rf"\b(?:not|no longer) interested\b(?! in\b)"
          rf"|\b(?:not|no longer) interested in (?:your|these|any|the|ur) {_MESSAGES}\b",
          R, "'not interested' answers the text itself; 'not interested in the SUV, what about...' is a conversation"),  # fmt: skip
    _rule(rf"\b(?:no longer|dont|do not|never) (?:want|wish|need|like)(?: to (?:receive|get))? "
          rf"(?:(?:any|your|these|those|the|more|such|ur) )*{_MESSAGES}\b"
          r"|\b(?:no longer|dont|do not) (?:want|wish) to (?:hear from|be contacted|be texted|get texted)\b",
          R, "'I don't want these texts', 'no longer wish to be contacted'"),  # fmt: skip
    _rule(r"\bspam(?:ming|med|mer|my)?\b|\b(?:block|blocking|blocked) (?:you|this|this number|your number|ur number|u)\b"
          r"|\breport(?:ing|ed)? (?:you|this number|your number)\b",
          R, "calling the texts spam, or blocking / reporting the sender"),  # fmt: skip
    _rule(r"\b(?:count me out|i want out|we want out|do not disturb|dnd)\b",
          R, "other ways of asking out"),  # fmt: skip
    _rule(r"^(?:\. )*(?:alto|baja|parar|cancelar)(?: \.)*$|\bno mas (?:mensajes|textos)\b"
          r"|\bdej(?:a|en) de (?:enviar|mandar|escribir)",
          R, "the Spanish keywords and phrasings some customers answer in (accents folded)"),  # fmt: skip
    _rule(r"\b(?:didnt|did not|never) (?:sign up|signed up|subscribe|subscribed|opt in|opted in|consent|consented)\b"
          rf"|\b(?:didnt|did not|never) (?:ask|asked|agree|agreed) (?:for|to) (?:these|be texted|be contacted"
          rf"|{_MESSAGES})\b|\b(?:didnt|did not|never) (?:ask|asked|agree|agreed) (?:for|to) this(?: \.)*$"
          r"|\b(?:how did you get|where did you get|who gave you) (?:my|this) (?:number|phone number|info)\b",
          R, "the person denies having consented; the sender bears the burden of proving consent"),  # fmt: skip
)
del N, R

# Apostrophes vanish ("don't" -> "dont"); sentence punctuation becomes a "." token, so an
# idiom never spans two sentences ("Stop. By the way..." is not "stop by"); anything else
# that is not a letter or digit is a space ("opt-out" -> "opt out").
_APOSTROPHES = re.compile(r"['’‘ʼ`´]")
_SENTENCE = re.compile(r"[.!?,;:…\n]+")
_OTHER = re.compile(r"[^\w.]+|_")
_SPACES = re.compile(r" +")


def normalize(body: str) -> str:
    """The text the rules read: NFKC-folded, lower case, unaccented, words separated by one
    space, sentence punctuation kept as "." tokens."""
    text = unicodedata.normalize("NFKC", body).casefold()
    # Accents folded too ("más" -> "mas"): customers type them or not.
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = _APOSTROPHES.sub("", text)
    text = _SENTENCE.sub(" . ", text)
    text = _OTHER.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _letters(text: str) -> str:
    # NFKC folds full-width and other compatibility forms ("ＳＴＯＰ") to plain letters.
    folded = unicodedata.normalize("NFKC", text).upper()
    return "".join(ch for ch in folded if ch.isalnum())


def matching_rule(body: str) -> Rule | None:
    """The revocation row that decides `body`, if any (idioms blanked out first)."""
    text = normalize(body)
    for rule in RULES:
        if rule.outcome is Keyword.NONE:
            text = rule.pattern.sub(" _ ", text)
    for rule in RULES:
        if rule.outcome is Keyword.OPT_OUT and rule.pattern.search(text):
            return rule
    return None


def classify(body: str) -> Keyword:
    """What an inbound text asks for: a whole-message keyword, else a revocation or nothing."""
    keyword = _KEYWORDS.get(_letters(body))
    if keyword is not None:
        return keyword
    return Keyword.OPT_OUT if matching_rule(body) is not None else Keyword.NONE
