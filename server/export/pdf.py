"""The agreed plan as a document for people: HTML in English, Chinese or both side by side,
printed to PDF by WeasyPrint with a CJK font (Debian's fonts-noto-cjk).

Both functions are pure and CPU-bound: call them in an executor, never on the event loop.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from importlib.resources import files
from typing import Any, Final
from zoneinfo import ZoneInfo

from weasyprint import HTML, URLFetcher  # type: ignore[import-untyped]

from ..errors import Invalid
from ..notes.templates import LOCALES, TemplateSet
from .record import PlanRecord
from .wording import LANGUAGE_NAMES, SEXES, SPECIALTIES, SYSTEMS, WORDS

__all__ = ["plan_html", "plan_pdf"]

_CSS: Final = (files("server.export") / "plan.css").read_text(encoding="utf-8")


def plan_html(
    record: PlanRecord,
    templates: TemplateSet,
    *,
    languages: Sequence[str] = ("en", "zh-CN"),
    zone: ZoneInfo | None = None,
) -> str:
    """The plan as one self-contained HTML page (styles inline, nothing fetched).

    ``languages``: one of "en" and "zh-CN", or both (the first leads, the second follows each
    label and coded value). ``zone``: the institution's time zone, shown next to UTC.
    """
    return _Writer(record, templates, _checked(languages), zone).page()


def plan_pdf(
    record: PlanRecord,
    templates: TemplateSet,
    *,
    languages: Sequence[str] = ("en", "zh-CN"),
    zone: ZoneInfo | None = None,
) -> bytes:
    """The plan as an A4 PDF (see plan_html)."""
    page = plan_html(record, templates, languages=languages, zone=zone)
    # The page links to nothing; refusing every URL keeps rendering off the network and disk.
    document = HTML(string=page, url_fetcher=URLFetcher(allowed_protocols=()))
    pdf: bytes = document.write_pdf()
    return pdf


def _checked(languages: Sequence[str]) -> tuple[str, ...]:
    chosen = (languages,) if isinstance(languages, str) else tuple(languages)
    if (
        not 1 <= len(chosen) <= 2
        or len(set(chosen)) != len(chosen)
        or any(language not in LOCALES for language in chosen)
    ):
        raise Invalid.on(
            "languages", f"{list(chosen)!r} is not one or both of {', '.join(LOCALES)}"
        )
    return chosen


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _language(code: str) -> str | Mapping[str, str]:
    return LANGUAGE_NAMES.get(code, code)


def _at(instant: str) -> datetime:
    return datetime.fromisoformat(instant).astimezone(UTC)


def _fingerprint(digest: str) -> str:
    """The first 64 bits of the plan hash, in groups of four: short enough to read aloud."""
    hex_digits = digest.rpartition(":")[2]
    return " ".join(hex_digits[i : i + 4] for i in range(0, 16, 4))


class _Writer:
    """Writes one plan's page in the chosen languages."""

    def __init__(
        self,
        record: PlanRecord,
        templates: TemplateSet,
        languages: tuple[str, ...],
        zone: ZoneInfo | None,
    ) -> None:
        self._record = record
        self._templates = templates
        self._languages = languages
        self._zone = zone
        self._payload = record.payload
        self._template = str(self._payload["template"])

    def page(self) -> str:
        payload = self._payload
        lead = self._languages[0]
        title = WORDS["title"][lead].format(version=payload["version"])
        footer = " · ".join(
            [
                self._record.institution_name,
                str(payload["case"]["number"]),
                f"v{payload['version']}",
                _fingerprint(self._record.signed["hash"]),
            ]
        )
        return (
            f'<!DOCTYPE html>\n<html lang="{lead}">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_e(payload['case']['number'])} — {_e(title)}</title>\n"
            f'<meta name="author" content="{_e(self._record.institution_name)}">\n'
            f"<style>\n{_CSS}</style>\n</head>\n<body>\n"
            f'<div class="footer">{_e(footer)}</div>\n'
            + self._header()
            + self._case()
            + self._plan()
            + self._attendance()
            + self._history()
            + self._signature()
            + "</body>\n</html>\n"
        )

    # -- sections -------------------------------------------------------------------------------

    def _header(self) -> str:
        payload, patient = self._payload, self._record.patient
        session = payload.get("session")
        rows = [
            (self._say("case"), _e(payload["case"]["number"])),
            (self._say("board"), _e(session["board"]) if session else self._say("not_recorded")),
            (self._say("discussed"), self._session_time(session)),
            (self._say("template"), self._label("")),
        ]
        if payload.get("previous") is not None and payload.get("amendment_reason"):
            amends = self._say("amends", version=str(int(payload["version"]) - 1))
            rows.append((amends, f'<div class="text">{_e(payload["amendment_reason"])}</div>'))
        if patient is not None:
            rows += [
                (self._say("name"), _e(patient.name)),
                (self._say("mrn"), _e(patient.mrn)),
                (self._say("birth_date"), _e(patient.birth_date.isoformat())),
                (self._say("sex"), self._sex(patient.sex)),
            ]
        withheld = (
            ""
            if patient is not None
            else f'<p class="notice inline">'
            f"{self._say('withheld', institution=self._record.institution_name)}</p>\n"
        )
        return (
            f'<header class="plan">\n<div class="institution">'
            f"{_e(self._record.institution_name)}</div>\n"
            f"<h1>{self._say('title', version=str(payload['version']))}</h1>\n"
            f"{_fields(rows)}{withheld}</header>\n"
        )

    def _case(self) -> str:
        record = self._record
        summary = (
            f'<div class="mark inline">'
            f"{self._say('original', language=_language(record.summary_language))}</div>\n"
            f'<div class="text" lang="{_e(record.summary_language)}">{_e(record.summary)}</div>\n'
        )
        if record.translation:
            language = record.translation_language or ""
            mark = self._say(
                "translation", translator=record.translator or "—", language=_language(language)
            )
            summary += (
                f'<div class="translation">\n<div class="mark inline">{mark}</div>\n'
                f'<div class="text" lang="{_e(language)}">{_e(record.translation)}</div>\n</div>\n'
            )
        return (
            f"<h2>{self._say('question')}</h2>\n"
            f'<div class="text">{_e(record.clinical_question)}</div>\n'
            f'<h2>{self._say("summary")}</h2>\n<div class="summary">\n{summary}</div>\n'
        )

    def _plan(self) -> str:
        """Every field of the note in the template's order: runs of single values as one table,
        groups, lists and long texts each under their own heading."""
        bundle = self._templates.bundle(self._template)
        note: Mapping[str, Any] = self._payload["note"]
        parts = [f"<h2>{self._say('plan')}</h2>\n"]
        run: list[tuple[str, str]] = []
        for name, schema in _present(bundle, [note]):
            value = note[name]
            if schema.get("type") in ("object", "array") or schema.get("x-multiline"):
                parts.append(_fields(run, loose=True))
                run = []
                parts.append(
                    f"<h3>{self._label(name)}</h3>\n{self._composite(name, schema, value)}"
                )
            else:
                run.append((self._label(name), self._value(name, schema, value)))
        parts.append(_fields(run, loose=True))
        return "".join(parts)

    def _attendance(self) -> str:
        payload = self._payload
        zone = self._zone or UTC
        zone_name = getattr(zone, "key", "UTC")
        rows = []
        for person in payload.get("attendance", []):
            rows.append(
                "<tr>"
                f"<td>{_e(person['name'])}</td>"
                f"<td>{self._both(self._specialties([person.get('specialty') or '']))}</td>"
                f"<td>{_e(person['institution'])}</td>"
                f"<td>{self._span(person.get('joined_at'), person.get('left_at'), zone)}</td>"
                "</tr>\n"
            )
        head = "".join(
            f"<th>{cell}</th>"
            for cell in (
                self._say("name"),
                self._say("specialty"),
                self._say("institution"),
                self._say("present", zone=zone_name),
            )
        )
        table = (
            f'<table class="attendance">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{''.join(rows)}</tbody>\n</table>\n"
            if rows
            else f"<p>{self._say('nobody')}</p>\n"
        )
        quorum = payload.get("quorum") or {}
        required = quorum.get("required") or []
        missing = quorum.get("missing") or []
        verdict = (
            f'<span class="quorum-missing">'
            f"{self._say('quorum_missing', specialties=self._specialties(missing))}</span>"
            if missing
            else self._say("quorum_met")
        )
        needed = self._both(self._specialties(required)) if required else self._say("none_required")
        return f"<h2>{self._say('attendance')}</h2>\n{table}" + _fields(
            [(self._say("quorum"), verdict), (self._say("required"), needed)]
        )

    def _history(self) -> str:
        rows = []
        for version in self._record.versions:
            payload = version["payload"]
            reason = payload.get("amendment_reason")
            by = payload.get("finalized_by") or {}
            why = f'<div class="text">{_e(reason)}</div>' if reason else self._say("first_version")
            finalized = _at(payload["finalized_at"]).strftime("%Y-%m-%d %H:%M")
            rows.append(
                f'<tr class="main"><td>{_e(payload["version"])}</td><td>{_e(finalized)}</td>'
                f"<td>{_e(by.get('name', ''))}</td><td>{why}</td></tr>\n"
                f'<tr class="hash"><td></td><td colspan="3" class="digest">{_e(version["hash"])}'
                "</td></tr>\n"
            )
        head = "".join(
            f"<th>{self._say(word)}</th>"
            for word in ("version", "finalized", "finalized_by", "reason")
        )
        return (
            f"<h2>{self._say('history')}</h2>\n"
            f'<table class="history">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{''.join(rows)}</tbody>\n</table>\n"
        )

    def _signature(self) -> str:
        signed, payload = self._record.signed, self._payload
        by = payload.get("finalized_by") or {}
        signer = _e(by.get("name", ""))
        if by.get("institution"):
            signer += f" ({_e(by['institution'])})"
        signature = signed.get("signature") or {}
        rows = [
            (self._say("signed_by"), signer),
            (self._say("signed_at"), self._instant(payload["finalized_at"])),
            (
                self._say("key"),
                f"{_e(signature.get('kid', ''))} ({_e(signature.get('alg', ''))})",
            ),
            (self._say("plan_hash"), f'<span class="digest">{_e(signed["hash"])}</span>'),
            (self._say("fingerprint"), f"<strong>{_e(_fingerprint(signed['hash']))}</strong>"),
        ]
        return (
            f'<section class="signature">\n<h2>{self._say("signature")}</h2>\n'
            f"{_fields(rows)}"
            f'<p class="notice">{self._say("verify")}</p>\n</section>\n'
        )

    # -- note values ----------------------------------------------------------------------------

    def _composite(self, path: str, schema: Mapping[str, Any], value: Any) -> str:
        """A group as a table of its fields, a list as a ranked table, a long text as text."""
        if schema.get("type") == "object" and isinstance(value, Mapping):
            rows = [
                (
                    self._label(f"{path}.{name}"),
                    self._cell(f"{path}.{name}", child, value[name]),
                )
                for name, child in _present(schema, [value])
            ]
            return _fields(rows)
        if schema.get("type") == "array" and isinstance(value, list):
            return self._list(path, schema["items"], value)
        return self._value(path, schema, value)

    def _list(self, path: str, item: Mapping[str, Any], values: list[Any]) -> str:
        columns = _present(item, [v for v in values if isinstance(v, Mapping)])
        head = "<th>#</th>" + "".join(
            f"<th>{self._label(f'{path}.{name}')}</th>" for name, _ in columns
        )
        rows = []
        for rank, entry in enumerate(values, start=1):
            cells = "".join(
                "<td>"
                + (
                    self._cell(f"{path}.{name}", child, entry[name])
                    if isinstance(entry, Mapping) and entry.get(name) not in (None, "", [])
                    else ""
                )
                + "</td>"
                for name, child in columns
            )
            rows.append(f'<tr><td class="rank">{rank}</td>{cells}</tr>\n')
        return (
            f'<table class="list">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{''.join(rows)}</tbody>\n</table>\n"
        )

    def _cell(self, path: str, schema: Mapping[str, Any], value: Any) -> str:
        if schema.get("type") in ("object", "array"):
            return self._composite(path, schema, value)
        return self._value(path, schema, value)

    def _value(self, path: str, schema: Mapping[str, Any], value: Any) -> str:
        if "oneOf" in schema:
            return self._coded(path, schema, value)
        if isinstance(value, bool):
            return self._say("yes" if value else "no")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if schema.get("x-multiline"):
            return f'<div class="text">{_e(value)}</div>\n'
        return _e(value)

    def _coded(self, path: str, schema: Mapping[str, Any], value: Any) -> str:
        """A coded value by its display; a code a reader cannot guess from it in small print."""
        shown = self._both(
            {
                language: self._templates.choice_label(self._template, path, value, language)
                for language in self._languages
            }
        )
        system = schema.get("x-system")
        english = self._templates.choice_label(self._template, path, value, "en")
        if system and str(value) not in english:
            name = SYSTEMS.get(system, system)
            shown += f'<span class="code">{_e(name)} {_e(value)}</span>'
        return shown

    # -- words ----------------------------------------------------------------------------------

    def _say(self, key: str, **values: str | Mapping[str, str]) -> str:
        """One of the document's own phrases in its languages; a value is one text for all of
        them or a text by language. Escaped here."""
        return self._both(
            {
                language: WORDS[key][language].format(
                    **{k: v if isinstance(v, str) else v[language] for k, v in values.items()}
                )
                for language in self._languages
            }
        )

    def _label(self, path: str) -> str:
        return self._both(
            {
                language: self._templates.label(self._template, path, language)
                for language in self._languages
            }
        )

    def _specialties(self, specialties: Sequence[str]) -> dict[str, str]:
        """A list of specialties as each language writes one."""
        separators = {"en": ", ", "zh-CN": "、"}
        return {
            language: separators[language].join(
                SPECIALTIES[s][language] if s in SPECIALTIES else s.replace("_", " ")
                for s in specialties
            )
            for language in self._languages
        }

    def _sex(self, sex: str) -> str:
        names = SEXES.get(sex)
        return _e(sex) if names is None else self._both(names)

    def _both(self, texts: Mapping[str, str]) -> str:
        """Texts by language, the first language's leading; the same text once."""
        first, *rest = (texts[language] for language in self._languages)
        lead = f'<span lang="{self._languages[0]}">{_e(first)}</span>'
        if not rest or rest[0] == first:
            return lead
        return f'{lead}<span lang="{self._languages[1]}" class="alt">{_e(rest[0])}</span>'

    # -- time -----------------------------------------------------------------------------------

    def _session_time(self, session: Mapping[str, Any] | None) -> str:
        if not session or not session.get("start_at"):
            return self._say("not_recorded")
        zones: list[tzinfo] = [UTC]
        if self._zone is not None and self._zone.key not in ("UTC", "Etc/UTC"):
            zones.append(self._zone)
        lines = []
        for zone in zones:
            start = _at(session["start_at"]).astimezone(zone)
            text = f"{start:%Y-%m-%d %H:%M}"
            if session.get("end_at"):
                end = _at(session["end_at"]).astimezone(zone)
                text += f"–{end:%H:%M}" if end.date() == start.date() else f"–{end:%Y-%m-%d %H:%M}"
            lines.append(f"{_e(text)} {_e(getattr(zone, 'key', 'UTC'))}")
        return "<br>".join(lines)

    def _instant(self, instant: str) -> str:
        at = _at(instant)
        text = f"{at:%Y-%m-%d %H:%M:%S} UTC"
        if self._zone is not None and self._zone.key not in ("UTC", "Etc/UTC"):
            text += f" ({at.astimezone(self._zone):%Y-%m-%d %H:%M:%S} {self._zone.key})"
        return _e(text)

    def _span(self, joined: str | None, left: str | None, zone: tzinfo) -> str:
        if not joined:
            return ""
        start = _at(joined).astimezone(zone)
        text = f"{start:%H:%M}–"
        if left:
            end = _at(left).astimezone(zone)
            text += f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
        return _e(text)


def _present(
    schema: Mapping[str, Any], groups: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Mapping[str, Any]]]:
    """The fields that hold a value in any of ``groups`` with their schemas, in the template's
    order; then any the template no longer knows (it changed after signing), so that nothing
    signed is left out of the document."""
    known: Mapping[str, Any] = schema.get("properties", {})
    names = list(known) + [n for group in groups for n in group if n not in known]
    return [
        (name, known.get(name, {}))
        for name in dict.fromkeys(names)
        if any(group.get(name) not in (None, "", []) for group in groups)
    ]


def _fields(rows: Sequence[tuple[str, str]], *, loose: bool = False) -> str:
    """Label/value rows (both already HTML) as a two-column table; nothing for no rows.
    ``loose``: the note's own single values between its groups, labelled like headings."""
    if not rows:
        return ""
    body = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>\n" for label, value in rows)
    kind = "fields loose" if loose else "fields"
    return f'<table class="{kind}">\n<tbody>\n{body}</tbody>\n</table>\n'
