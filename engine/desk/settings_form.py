"""The settings form and the tenant policy document, both ways.

`SettingsForm.from_policy` fills the form from a stored policy (tenant.yaml as JSON);
`SettingsForm.from_post` reads what the browser sent; `policy_body` turns the form into
the document PUT /api/v1/tenant/policy accepts, together with where each key of that
document was typed, so that a validation error located at a key (`quiet_hours.start`,
`senders.people.jo.email`) is shown next to the input it came from. The form never
validates a policy itself: campaigns/tenant_file.py does, through the API's own path.

Input names are flat (`quiet_start`, `class_mode_2`) so each one is also its element id.
Rows of classes and people already in the policy are numbered; each list has one blank
row (`..._new`) to add one more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InputError

__all__ = ["CHANNELS", "MODES", "FormErrors", "SettingsForm", "locate"]

# The channels a policy names (campaigns/tenant_file.py Channel), in the order shown.
CHANNELS = ("email", "sms", "voice", "letter", "social")
# A class mode; "" is "follows the regime" (stored as `{}`, mode null).
MODES = ("", "opt_in", "opt_out", "exempt")
_MAX_ROWS = 200  # classes or people in one form: far more than a tenant has
_SPLIT = re.compile(r"[\s,;]+")

_GENERAL = ("name", "regime", "country", "timezone", "postal_address")
_SENDERS = ("senders_domains", "senders_bulk_email", "senders_bulk_name", "senders_bulk_phone",
            "senders_reply_to", "senders_return_path", "senders_unsubscribe")
_TICKED = "on"


@dataclass
class SettingsForm:
    """What the settings form shows: every input's text by name (a ticked box is "on"),
    and the codes of the class and person rows."""

    values: dict[str, str]
    classes: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)

    def value(self, name: str) -> str:
        return self.values.get(name, "")

    def ticked(self, name: str) -> bool:
        return self.values.get(name) == _TICKED

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any]) -> SettingsForm:
        values: dict[str, str] = {name: str(policy.get(name) or "") for name in _GENERAL}
        classes = list(policy.get("classes", {}))
        for index, code in enumerate(classes):
            values[f"class_mode_{index}"] = policy["classes"][code].get("mode") or ""
        sms = policy.get("sms", {})
        values["sms_opt_in_required"] = _TICKED if sms.get("opt_in_required") else ""
        values["sms_excluded"] = "\n".join(sms.get("opt_in_excluded_sources", []))
        values["sms_opt_in_message"] = sms.get("opt_in_message", "")
        values["sms_opt_out_footer"] = sms.get("opt_out_footer", "")
        for channel, days in policy.get("reauthorization_days", {}).items():
            values[f"reauth_{channel}"] = str(days)
        review = policy.get("review", {})
        values["review_period_days"] = str(review.get("period_days", ""))
        values["review_enforce"] = _TICKED if review.get("enforce") else ""
        quiet = policy.get("quiet_hours") or {}
        values["quiet_start"], values["quiet_end"] = quiet.get("start", ""), quiet.get("end", "")
        for cap in policy.get("frequency_caps", []):
            values[f"cap_max_{cap['channel']}"] = str(cap["max"])
            values[f"cap_hours_{cap['channel']}"] = str(cap["per_hours"])
        senders = policy.get("senders") or {}
        people = list(senders.get("people", {}))
        if senders:
            bulk = senders.get("bulk") or {}
            values.update({
                "senders_domains": ", ".join(senders.get("domains", [])),
                "senders_bulk_email": bulk.get("email") or "", "senders_bulk_name": bulk.get("name") or "",
                "senders_bulk_phone": bulk.get("phone") or "",
                "senders_reply_to": senders.get("reply_to") or "",
                "senders_return_path": senders.get("return_path") or "",
                "senders_unsubscribe": senders.get("unsubscribe") or "",
            })
            for index, code in enumerate(people):
                person = senders["people"][code]
                for part in ("email", "name", "phone"):
                    values[f"person_{part}_{index}"] = person.get(part) or ""
        return cls(values, classes, people)

    @classmethod
    def from_post(cls, post: Mapping[str, Any]) -> SettingsForm:
        """The form as posted; anything that is not text (a file) is ignored."""
        values = {name: value for name, value in post.items() if isinstance(value, str) and name != "csrf_token"}
        return cls(values, _rows(values, "class_code_"), _rows(values, "person_code_"))

    def policy_body(self, tenant: str, dkim: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str], list[InputError]]:
        """(the policy document, key → input name, problems of the form's own shape).

        `dkim` is kept as it is: key files are paths on the server, set with
        `consentry tenant apply`, not typed in a browser."""
        where: dict[str, str] = {}
        problems: list[InputError] = []
        text = self.value
        body: dict[str, Any] = {"tenant": tenant}
        for name in _GENERAL:
            body[name] = text(name).strip()
            where[name] = name
        body["classes"] = self._classes(where, problems)
        where["classes"] = "class_code_new" if text("class_code_new").strip() else "classes"
        body["sms"] = {
            "opt_in_required": self.ticked("sms_opt_in_required"),
            "opt_in_excluded_sources": [line.strip() for line in text("sms_excluded").splitlines() if line.strip()],
            "opt_in_message": text("sms_opt_in_message"),
            "opt_out_footer": text("sms_opt_out_footer"),
        }
        where.update({"sms": "sms", "sms.opt_in_excluded_sources": "sms_excluded",
                      "sms.opt_in_message": "sms_opt_in_message", "sms.opt_out_footer": "sms_opt_out_footer"})
        body["reauthorization_days"] = {ch: text(f"reauth_{ch}").strip() for ch in CHANNELS if text(f"reauth_{ch}").strip()}
        where["reauthorization_days"] = "reauthorization"
        where.update({f"reauthorization_days.{ch}": f"reauth_{ch}" for ch in CHANNELS})
        body["review"] = {"period_days": text("review_period_days").strip(), "enforce": self.ticked("review_enforce")}
        where.update({"review": "review_period_days", "review.period_days": "review_period_days"})
        quiet = {key: text(name).strip() for key, name in (("start", "quiet_start"), ("end", "quiet_end"))
                 if text(name).strip()}
        body["quiet_hours"] = quiet or None
        where.update({"quiet_hours": "quiet_start", "quiet_hours.start": "quiet_start", "quiet_hours.end": "quiet_end"})
        body["frequency_caps"] = self._caps(where)
        where["frequency_caps"] = "caps"
        senders = self._senders(where, problems)
        if senders is not None:
            body["senders"] = senders
        body["dkim"] = dkim
        return body, where, problems

    def _classes(self, where: dict[str, str], problems: list[InputError]) -> dict[str, Any]:
        classes: dict[str, Any] = {}
        for index, code in enumerate(self.classes):
            where[f"classes.{code}"] = f"class_mode_{index}"
            if not self.ticked(f"class_remove_{index}"):
                classes[code] = _mode(self.value(f"class_mode_{index}"))
        new = self.value("class_code_new").strip()
        if new:
            if new in self.classes:
                problems.append(InputError(f"{new!r} is already a class: change its mode in its own row",
                                           field="classes"))
            classes[new] = _mode(self.value("class_mode_new"))
            where[f"classes.{new}"] = "class_mode_new"
        return classes

    def _caps(self, where: dict[str, str]) -> list[dict[str, str]]:
        caps: list[dict[str, str]] = []
        for channel in CHANNELS:
            given = {key: self.value(f"cap_{name}_{channel}").strip() for key, name in (("max", "max"), ("per_hours", "hours"))}
            if not any(given.values()):
                continue
            index = len(caps)
            caps.append({"channel": channel, **{key: value for key, value in given.items() if value}})
            where.update({f"frequency_caps.{index}": f"cap_max_{channel}",
                          f"frequency_caps.{index}.max": f"cap_max_{channel}",
                          f"frequency_caps.{index}.per_hours": f"cap_hours_{channel}"})
        return caps

    def _senders(self, where: dict[str, str], problems: list[InputError]) -> dict[str, Any] | None:
        text = self.value
        rows = [(str(index), code) for index, code in enumerate(self.people) if not self.ticked(f"person_remove_{index}")]
        new = text("person_code_new").strip()
        if new:
            rows.append(("new", new))
            if new in self.people:
                problems.append(InputError(f"{new!r} is already a person: change their row", field="senders.people"))
        if not rows and not any(text(name).strip() for name in _SENDERS):
            return None  # no senders section: campaigns name their own sender
        senders: dict[str, Any] = {"domains": [d for d in _SPLIT.split(text("senders_domains")) if d]}
        where.update({"senders": "senders", "senders.domains": "senders_domains",
                      "senders.people": "person_code_new" if new else "senders"})
        bulk = _present({part: text(f"senders_bulk_{part}") for part in ("email", "name", "phone")})
        if bulk:
            senders["bulk"] = bulk
        where["senders.bulk"] = "senders_bulk_email"
        where.update({f"senders.bulk.{part}": f"senders_bulk_{part}" for part in ("email", "name", "phone")})
        for key in ("reply_to", "return_path", "unsubscribe"):
            if text(f"senders_{key}").strip():
                senders[key] = text(f"senders_{key}").strip()
            where[f"senders.{key}"] = f"senders_{key}"
        people: dict[str, Any] = {}
        for index, code in rows:
            people[code] = _present({part: text(f"person_{part}_{index}") for part in ("email", "name", "phone")})
            where[f"senders.people.{code}"] = f"person_email_{index}"
            where.update({f"senders.people.{code}.{part}": f"person_{part}_{index}" for part in ("email", "name", "phone")})
        if people:
            senders["people"] = people
        return senders


def _rows(values: Mapping[str, str], prefix: str) -> list[str]:
    codes = []
    for index in range(_MAX_ROWS):
        code = values.get(f"{prefix}{index}")
        if code is None:
            break
        codes.append(code)
    return codes


def _mode(mode: str) -> dict[str, str]:
    # "" follows the regime; any other text goes to the policy's validation as typed.
    return {"mode": mode} if mode else {}


def _present(parts: Mapping[str, str]) -> dict[str, str]:
    return {key: value.strip() for key, value in parts.items() if value.strip()}


@dataclass(frozen=True, slots=True)
class FormErrors:
    """Problems by the element they belong to (an input, or a fieldset's id), in the
    order found; `summary` lists (element id, message) for the list at the top."""

    by_element: dict[str, list[str]]

    @property
    def summary(self) -> list[tuple[str, str]]:
        return [(element, message) for element, messages in self.by_element.items() for message in messages]

    def __bool__(self) -> bool:
        return bool(self.by_element)


def locate(errors: Iterable[InputError], where: Mapping[str, str], fallback: str = "settings") -> FormErrors:
    """Each error at the input its key was typed in: the longest key of `where` that is the
    error's field or a parent of it (`quiet_hours.start` → quiet_start; `review` → the
    period's input); a key typed nowhere goes to `fallback` (the form)."""
    found: dict[str, list[str]] = {}
    for error in errors:
        path = (error.field or "").split(".") if error.field else []
        element = fallback
        for length in range(len(path), 0, -1):
            key = ".".join(path[:length])
            if key in where:
                element = where[key]
                break
        found.setdefault(element, []).append(error.message)
    return FormErrors(found)
