"""Texts in English and German: UI strings from ``assets/ui_text.json``, the seminar's
explanations from ``assets/explanations.{en,de}.md``.

The language is ``st.session_state["lang"]`` (the sidebar switch); :func:`t` falls back to
English for a missing translation and to the key itself for a missing text, so a gap shows
up as a visible key, never as an error.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dashboard.figures import DEFAULT_LABELS, DEPTH_LABELS

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TEXTS_FILE = ASSETS / "ui_text.json"
LANGS = {"en": "English", "de": "Deutsch"}
DEFAULT_LANG = "en"


@functools.cache
def texts() -> dict[str, dict[str, str]]:
    """``{key: {"en": ..., "de": ...}}``."""
    data = json.loads(TEXTS_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def lang() -> str:
    value = st.session_state.get("lang")
    return value if value in LANGS else DEFAULT_LANG


def t(key: str, **values: object) -> str:
    """The text ``key`` in the current language, with ``{name}`` fields filled in."""
    entry = texts().get(key)
    if entry is None:
        return key
    text = entry.get(lang()) or entry.get(DEFAULT_LANG, key)
    return text.format(**values) if values else text


def labels(prefix: str, options) -> dict:
    """``{option: t(f"{prefix}.{option}")}``, for a widget's ``format_func=labels(...).get``.

    Texts are looked up now, while the script runs, not whenever the widget formats."""
    return {option: t(f"{prefix}.{option}") for option in options}


def figure_labels() -> dict[str, str]:
    """The figure builders' texts (``fig.<name>``) in the current language."""
    return {key: t(f"fig.{key}") for key in (*DEFAULT_LABELS, *DEPTH_LABELS)}


@dataclass(frozen=True)
class Section:
    """One concept of the Explain page: a title, markdown, and the control (a config key or
    a UI element id) that demonstrates it."""

    title: str
    body: str
    control: str | None


_CONTROL = re.compile(r"^<!--\s*control:\s*(\S+)\s*-->\s*$", re.MULTILINE)


@functools.cache
def explanations(language: str) -> tuple[str, tuple[Section, ...]]:
    """The intro and the ``## `` sections of ``explanations.<language>.md``."""
    text = (ASSETS / f"explanations.{language}.md").read_text(encoding="utf-8")
    intro, *parts = re.split(r"^## ", text, flags=re.MULTILINE)
    sections = []
    for part in parts:
        title, _, body = part.partition("\n")
        match = _CONTROL.search(body)
        control = match.group(1) if match else None
        body = _CONTROL.sub("", body).strip()
        sections.append(Section(title.strip(), body, control))
    intro = re.sub(r"^# .*\n", "", intro).strip()
    return intro, tuple(sections)
