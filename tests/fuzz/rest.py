"""RestFuzz: Schemathesis over every operation of the served OpenAPI document, with the token
of each role, checking that every answer's status and media type are declared, its body
matches the declared schema, and nothing answers 5xx."""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .live import ROLES, LiveServer

__all__ = ["Finding", "RestFuzz", "RestTally"]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Routes whose every call costs real work (a password hashed, a job or a PDF made): a few
# inputs each are enough, and many would only measure the server's patience.
EXPENSIVE = {"post_login", "post_user", "post_accept", "start_bulk", "export_plan"}
# Logging out with a role's token would end the token the rest of the run uses.
ANONYMOUS_ONLY = {"post_logout"}


@schemathesis.serializer("multipart/related")
def _multipart_related(ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """STOW-RS bodies: each generated value as one application/dicom part."""
    del ctx
    boundary = "eboard-fuzz-boundary"
    values = list(value.values()) if isinstance(value, dict) else [value]
    body = b""
    for part in values:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogatepass")
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return {"data": body, "headers": {"Content-Type": content_type}}


@dataclass
class Finding:
    """One input the server answered wrongly: what was sent and what came back."""

    operation: str
    role: str
    status: int
    check: str
    message: str
    request: dict[str, Any]
    body: str

    def json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class RestTally:
    inputs: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    # 2xx answers per operation: whose success schema the run actually checked.
    successes: Counter[str] = field(default_factory=Counter)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


class RestFuzz:
    """Draws inputs for each (operation, role) and checks each answer."""

    def __init__(
        self, live: LiveServer, *, examples: int, seed: int = 0, tally: RestTally | None = None
    ) -> None:
        self._live = live
        self._examples = examples
        self._seed = seed
        self._http = requests.Session()
        self._known = KnownIds.discover(live, self._http)
        self.tally = tally if tally is not None else RestTally()

    def run(self, only: Callable[[str], bool] = lambda _: True) -> RestTally:
        document = self._http.get(f"{self._live.url}/api/openapi.json", timeout=30).json()
        schema = schemathesis.openapi.from_dict(document)
        for result in schema.get_all_operations():
            operation = result.ok()
            name = operation.definition.raw.get("operationId", operation.label)
            if not only(name):
                continue
            public = operation.definition.raw.get("x-roles") == ["anonymous"]
            roles: list[str | None] = [None] if public or name in ANONYMOUS_ONLY else [*ROLES]
            if not public and name not in ANONYMOUS_ONLY:
                roles.append(None)  # and once without a token
            for role in roles:
                count = self._examples if role is not None or public else 2
                if name in EXPENSIVE:
                    count = min(count, 3)
                self._fuzz(operation, name, role, count)
        return self.tally

    def _fuzz(self, operation: Any, name: str, role: str | None, count: int) -> None:
        known = self._known.for_path(operation.path)
        strategies = [operation.as_strategy(GenerationMode.NEGATIVE)]
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE))
        if known:
            # Ids that exist reach past the 404 into the handler.
            strategies.append(
                st.sampled_from(known).flatmap(
                    lambda params: operation.as_strategy(
                        GenerationMode.POSITIVE, path_parameters=params
                    )
                )
            )
        # Bodies whose ids exist reach past "no board 4177…" into the handler too.
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE).map(self._known.fill_body))
        headers = self._live.headers(role)

        @hypothesis.settings(
            max_examples=count,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
        @hypothesis.seed(self._seed + zlib.crc32(f"{name} {role}".encode()))
        @hypothesis.given(case=st.one_of(*strategies))
        def check(case: Case) -> None:
            self._one(case, name, role or "anonymous", headers)

        check()

    def _one(self, case: Case, name: str, role: str, headers: dict[str, str]) -> None:
        try:
            response = case.call(base_url=self._live.url, headers=headers, timeout=60)
        except requests.RequestException as exc:
            self._record(case, name, role, 0, "no answer", repr(exc), "")
            return
        self.tally.inputs += 1
        self.tally.statuses[response.status_code] += 1
        if response.status_code < 300:
            self.tally.successes[name] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else [exc]:
                self._record(
                    case,
                    name,
                    role,
                    response.status_code,
                    failure.title,
                    str(failure),
                    response.text,
                )

    def _record(
        self, case: Case, name: str, role: str, status: int, check: str, message: str, body: str
    ) -> None:
        request = {
            "method": case.method,
            "path": case.formatted_path,
            "query": case.query,
            "body": _jsonable(case.body),
            "media_type": case.media_type,
            "curl": case.as_curl_command(base_url=self._live.url),  # add the role's token
        }
        self.tally.findings.append(
            Finding(name, role, status, check, message[:2000], request, body[:2000])
        )


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)[:2000]
    return value


@dataclass
class KnownIds:
    """Ids that exist in the seeded demo, by path parameter name, and the stored DICOM UIDs
    (study, series, instance), so some inputs reach past the 404 into the handlers."""

    values: dict[str, list[str]]
    instances: list[tuple[str, str, str]]

    @classmethod
    def discover(cls, live: LiveServer, http: requests.Session) -> KnownIds:
        def get(path: str, role: str = "coordinator") -> Any:
            resp = http.get(f"{live.url}{path}", headers=live.headers(role), timeout=30)
            resp.raise_for_status()
            return resp.json()

        cases = [c["id"] for c in get("/api/cases")["items"]]
        boards = [b["id"] for b in get("/api/boards")["items"]]
        sessions = [s["id"] for b in boards for s in get(f"/api/boards/{b}/sessions")["items"]]
        items = [i["id"] for s in sessions[:5] for i in get(f"/api/sessions/{s}/agenda")["items"]]
        aliases = [s["alias"] for c in cases for s in get(f"/api/cases/{c}/imaging")["series"]]
        instances = []
        for study in get("/dicom-web/studies"):
            study_uid = study["0020000D"]["Value"][0]
            for series in get(f"/dicom-web/studies/{study_uid}/series"):
                series_uid = series["0020000E"]["Value"][0]
                path = f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances"
                for instance in get(path):
                    instances.append((study_uid, series_uid, instance["00080018"]["Value"][0]))
        users = [u["id"] for u in get("/api/users", "admin")["items"]]
        institutions = [i["id"] for i in get("/api/institutions")["items"]]
        values = {
            "user_id": [str(u) for u in users],
            "institution_id": [str(i) for i in institutions],
            "case_id": [str(c) for c in cases],
            "board_id": [str(b) for b in boards],
            "session_id": [str(s) for s in sessions[:10]],
            "item_id": [str(i) for i in items],
            "alias": aliases,
            "name": [t["id"] for t in get("/api/templates")["items"]],
            "rank": ["1", "2"],
            "attachment_id": ["1", "2"],
            "frames": ["1", "1,2", "1,1,1"],
        }
        return cls(values, instances)

    def fill_body(self, case: Case) -> Case:
        """``case`` with each id its JSON body names set to one that exists (chosen by the
        body's own content, so the same input is made again when Hypothesis replays it)."""
        if not isinstance(case.body, dict):
            return case
        pick = zlib.crc32(repr(sorted(case.body.items(), key=repr)).encode())
        for key in list(case.body):
            choices = self.values.get(key) if key.endswith("_id") else None
            if choices:
                case.body[key] = int(choices[pick % len(choices)])
        if isinstance(case.body.get("item_ids"), list) and self.values["item_id"]:
            case.body["item_ids"] = [int(i) for i in self.values["item_id"]]
        return case

    def for_path(self, path: str) -> list[dict[str, str]]:
        """Some combinations of existing ids for the parameters of ``path`` (none when one of
        them has no known value)."""
        names = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if not names:
            return []
        rng = random.Random(path)
        out = []
        for _ in range(8):
            params: dict[str, str] = {}
            if self.instances:
                study, series, instance = rng.choice(self.instances)
                uids = {"study": study, "series": series, "instance": instance}
                params = {k: v for k, v in uids.items() if k in names}
            for name in names:
                if name not in params:
                    choices = self.values.get(name)
                    if not choices:
                        return []
                    params[name] = rng.choice(choices)
            out.append(params)
        return out
