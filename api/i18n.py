"""One language at a time (issue 23): the message catalogues of the pages and of the API's error
messages, as data. ``api/locale/<lang>/LC_MESSAGES/messages.po`` are gettext catalogues (msgids
in English), read with Babel at start-up (no compile step: each .po is turned into a .mo in
memory) and used three ways: by the page templates through jinja2's i18n extension (one
template environment per language), by the pages' scripts as a JSON catalogue
(GET /i18n/{lang}.json), and by the API's error handler, which translates an error's
``detail`` into the language the client asks for (``Accept-Language``; without one, English,
the API's own). A detail is matched against the catalogue's msgids, exactly or as a pattern
where the msgid has ``%(name)s`` placeholders ("alarm %(key)s not found"); the values put in
are translated too when the catalogue has them ("work order"). Languages: zh-CN (the default
of the pages) and en. A page's language is the ``facility_lang`` cookie, set by the pages from
the user's remembered choice (users.language)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")
DEFAULT: Language = "zh-CN"
COOKIE = "facility_lang"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
_FOLDER = {"zh-CN": "zh_CN", "en": "en"}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
WORDS = ("state", "role", "priority", "trade")  # a value in a message may be a code word


def language(value: str | None) -> Language | None:
    """A language we have for a cookie or header value ('zh', 'zh-CN', 'en-GB', ...)."""
    if not value:
        return None
    first = value.split(",")[0].split(";")[0].strip().lower()
    if first.startswith("zh"):
        return "zh-CN"
    if first.startswith("en"):
        return "en"
    return None


@dataclass(frozen=True, slots=True)
class Catalogues:
    translations: dict[Language, Translations]
    messages: dict[Language, dict[str, str]]
    patterns: tuple[tuple[re.Pattern[str], str], ...]

    def gettext(self, lang: Language, msgid: str) -> str:
        return self.messages[lang].get(msgid) or msgid

    def as_json(self, lang: Language) -> dict[str, str]:
        """Every translated message of the language (msgid -> text), for the pages' scripts."""
        return dict(self.messages[lang])

    def translate_detail(self, lang: Language, detail: str) -> str:
        """An API error message in ``lang``; unchanged if the catalogue does not know it."""
        table = self.messages[lang]
        if detail in table:
            return table[detail] or detail
        for pattern, msgid in self.patterns:
            found = pattern.fullmatch(detail)
            if found is not None and table.get(msgid):
                values = {k: next((table[w] for w in (v, *(f"{kind}:{v}" for kind in WORDS))
                                   if table.get(w)), v)
                          for k, v in found.groupdict().items()}
                return table[msgid] % values
        return detail


def _pattern(msgid: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(msgid)  # text, name, text, name, ..., text
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+)"
                    for i, p in enumerate(parts))
    return re.compile(regex, re.DOTALL)


def load(locale_dir: Path = LOCALE_DIR) -> Catalogues:
    """Read the .po catalogues; a broken catalogue fails the start, naming its file."""
    translations: dict[Language, Translations] = {}
    messages: dict[Language, dict[str, str]] = {}
    for lang in LANGUAGES:
        path = locale_dir / _FOLDER[lang] / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=_FOLDER[lang], abort_invalid=True)
        mo = io.BytesIO()
        write_mo(mo, catalog)
        mo.seek(0)
        translations[lang] = Translations(mo, domain="messages")
        messages[lang] = {str(m.id): str(m.string) for m in catalog
                          if m.id and isinstance(m.id, str) and m.string}
    templates = sorted({m for table in messages.values() for m in table if "%(" in m},
                       key=len, reverse=True)  # the most specific first
    return Catalogues(translations, messages, tuple((_pattern(m), m) for m in templates))
