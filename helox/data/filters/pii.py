"""Optional redaction of e-mail and IPv4 addresses, counted in the step's tally."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

from helox.data.documents import Document
from helox.data.filters.base import ConfiguredStep

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Four octets, not part of a longer dotted number such as a version "1.2.3.4.5".
IPV4 = re.compile(rf"(?<![\d.]){OCTET}(?:\.{OCTET}){{3}}(?!\.?\d)")


@dataclass
class PiiConfig:
    """Redaction of e-mail and IPv4 addresses in kept documents; off unless enabled."""

    enabled: bool = False
    emails: bool = True
    ipv4: bool = True
    email_replacement: str = "<EMAIL>"
    ipv4_replacement: str = "<IPV4>"


class PiiRedactor(ConfiguredStep[PiiConfig]):
    """Replace e-mail and IPv4 addresses with placeholders; count each kind replaced."""

    name = "pii_redaction"

    def __call__(self, doc: Document, tally: Counter[str]) -> Document:
        text = doc.text
        if self.config.emails and "@" in text:
            text, found = EMAIL.subn(self.config.email_replacement, text)
            tally["emails"] += found
        if self.config.ipv4:
            text, found = IPV4.subn(self.config.ipv4_replacement, text)
            tally["ipv4_addresses"] += found
        return doc if text == doc.text else replace(doc, text=text)
