"""The message catalogues (api/locale) as data: every string the templates, the pages' scripts
and api.vocabulary mark has a Chinese translation with the same placeholders, every code word
(state:..., priority:...) has its English, and an API error detail is translated whole, with the
values put in translated too."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir

from api import i18n

ROOT = Path(__file__).resolve().parents[3]
METHODS = [("api/templates/**.html", "jinja2"), ("api/static/*.js", "javascript"),
           ("api/**.py", "python")]
OPTIONS = {"api/templates/**.html": {"extensions": "jinja2.ext.i18n"},
           "api/static/*.js": {"parse_template_string": "true"}}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _marked() -> set[str]:
    found = extract_from_dir(ROOT, METHODS, keywords={"_": None, "t": None, "N_": None},
                             options_map=OPTIONS)
    return {msg for _f, _l, msg, _c, _x in found if isinstance(msg, str) and "${" not in msg}


def test_every_marked_string_has_its_chinese_with_the_same_placeholders() -> None:
    catalogues = i18n.load()
    chinese = catalogues.messages["zh-CN"]
    marked = _marked()
    assert len(marked) > 300
    assert sorted(m for m in marked if m not in chinese) == []
    assert [m for m in marked if set(PLACEHOLDER.findall(m))
            != set(PLACEHOLDER.findall(chinese[m]))] == []


def test_every_catalogue_entry_is_marked_so_make_messages_keeps_it() -> None:
    """``make messages`` drops what no source marks: a string a page builds at run time
    (``t(cond ? "a" : "b")``, a label kept in an array and translated later) must be marked
    where it is written (``t("a")``) or in api.vocabulary (``N_``)."""
    marked = _marked()
    catalogues = i18n.load().messages
    assert {lang: sorted(m for m in catalogues[lang] if m and m not in marked)
            for lang in ("zh-CN", "en")} == {"zh-CN": [], "en": []}


def test_every_code_word_has_its_english() -> None:
    english = i18n.load().messages["en"]
    codes = {m for m in _marked() if re.fullmatch(r"[a-z]+:[a-z_.]+", m)}
    assert codes and sorted(codes - set(english)) == []


def test_an_error_detail_is_translated_whole_with_its_values() -> None:
    catalogues = i18n.load()
    assert catalogues.translate_detail("zh-CN", "work order 5 not found") == "未找到工单 5"
    assert catalogues.translate_detail("zh-CN", "the order is assigned to bob, not to you") == (
        "该工单已派给 bob\uff0c不是您")
    assert catalogues.translate_detail("en", "work order 5 not found") == "work order 5 not found"
    assert catalogues.translate_detail("zh-CN", "something new") == "something new"


def test_languages_from_headers_and_cookies() -> None:
    assert i18n.language("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert i18n.language("en-GB") == "en" and i18n.language("fr") is None
    assert i18n.language(None) is None
