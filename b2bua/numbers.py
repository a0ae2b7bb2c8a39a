"""Telephone numbers: E.164 normalisation, emergency numbers, the do-not-record list.

Numbers are stored twice (docs/operations.md, "Numbers"): as dialled, and in E.164 when
the number can be read as a public number. `NumberPlan.e164` is that reading, done with
the `phonenumbers` library (libphonenumber's metadata) and the office's country and
area code from the config:

- "+49 30 123456", "004930123456" (the country's international prefix) and
  "030123456" (the national prefix, here with numbers.country = "DE") are all
  "+4930123456".
- A local number ("123456", no prefix) gets `numbers.area_code` ("030") put in front;
  without an area code it has no E.164 form, rather than a guessed one.
- Extension numbers, emergency numbers and other short codes (110, 112, 116117, 118xx)
  have no E.164 form: they are not public numbers, and prefixing an area code would
  invent a number that belongs to someone else.
- Anything phonenumbers can not parse, or parses as impossible, has no E.164 form.

Nothing here does I/O; the plan is built once per config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import phonenumbers

__all__ = [
    "DEFAULT_EMERGENCY",
    "WITHHELD",
    "NumberPlan",
    "clean_number",
    "is_region",
]

DEFAULT_EMERGENCY = ("110", "112")
WITHHELD = "withheld"  # the caller column of a call whose number was withheld (CLIR)

_SEPARATORS = re.compile(r"[\s().\-/]")  # RFC 3966 visual separators and blanks
_NUMBER = re.compile(r"\+?[0-9]{1,20}")


def clean_number(number: str) -> str:
    """`number` without visual separators ("+49 (30) 12-34" -> "+49301234")."""
    return _SEPARATORS.sub("", number)


def is_region(code: str) -> bool:
    """True for a two-letter region phonenumbers has metadata for ("DE", "AT" ...)."""
    return code in phonenumbers.SUPPORTED_REGIONS


@dataclass(frozen=True)
class NumberPlan:
    """How this office's numbers read: country, area code, emergency and extensions."""

    country: str | None = "DE"
    area_code: str | None = None  # as dialled nationally, e.g. "030" for Berlin
    emergency: tuple[str, ...] = DEFAULT_EMERGENCY
    extensions: frozenset[str] = frozenset()
    do_not_record: tuple[str, ...] = ()
    _dnr: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.country is not None and not is_region(self.country):
            raise ValueError(f"unknown region {self.country!r}")
        # Both forms of each listed number: a dialled "0301234" and its E.164 twin.
        forms: set[str] = set()
        for number in self.do_not_record:
            cleaned = clean_number(number)
            forms.add(cleaned)
            e164 = self.e164(cleaned)
            if e164 is not None:
                forms.add(e164)
        object.__setattr__(self, "_dnr", frozenset(forms))

    @property
    def country_code(self) -> int | None:
        """The country calling code (49 for DE), None without a country."""
        if self.country is None:
            return None
        return phonenumbers.country_code_for_region(self.country)

    def is_emergency(self, dialled: str) -> bool:
        return clean_number(dialled) in self.emergency

    def is_short_code(self, number: str) -> bool:
        """An emergency number, or a short code of the country (115, 116117, 11833)."""
        if number in self.emergency:
            return True
        if self.country is None or not number.isdigit() or len(number) > 7:
            return False
        try:
            parsed = phonenumbers.parse(number, self.country)
        except phonenumbers.NumberParseException:
            return False
        return phonenumbers.is_valid_short_number_for_region(parsed, self.country)

    def e164(self, number: str | None) -> str | None:
        """The E.164 form ("+4930123456") of `number`, or None (see the module docstring)."""
        if number is None:
            return None
        text = clean_number(number)
        if not _NUMBER.fullmatch(text) or text in self.extensions or self.is_short_code(text):
            return None
        if not text.startswith("+"):
            if self.country is None:
                return _international_only(text)
            meta = phonenumbers.PhoneMetadata.metadata_for_region(self.country)
            intl = (meta.international_prefix or "00") if meta is not None else "00"
            national = (meta.national_prefix or "") if meta is not None else ""
            # Some countries' international prefix is a pattern ("0(?:0|1[0-9])"), not text.
            international = re.match(intl, text) is not None
            local = not international and not (national and text.startswith(national))
            if local:
                if not self.area_code:
                    return None  # a local number, but we do not know where "local" is
                text = self.area_code + text
        try:
            parsed = phonenumbers.parse(text, self.country)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(parsed):
            return None
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    def do_not_record_match(self, numbers: Iterable[str | None]) -> bool:
        """True when any of `numbers` (as dialled or presented) is on the do-not-record list."""
        for number in numbers:
            if not number:
                continue
            cleaned = clean_number(number)
            if cleaned in self._dnr:
                return True
            e164 = self.e164(cleaned)
            if e164 is not None and e164 in self._dnr:
                return True
        return False


def _international_only(text: str) -> str | None:
    """Without a country only "00" + country code can be read (the ITU-recommended prefix)."""
    if not text.startswith("00"):
        return None
    try:
        parsed = phonenumbers.parse("+" + text[2:], None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
