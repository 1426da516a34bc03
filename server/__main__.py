"""``python -m server``: serve, demo, migrate, user add, verify-audit, verify, export, keys rotate
(field key) and keys rotate-signing (an institution's plan-signing key).

Configuration enters here, once: flags, with EBOARD_* environment variables as defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .config import DEMO_PASSWORD, Settings
from .errors import ConfigError, EboardError

if TYPE_CHECKING:
    from aiohttp import web

    from .export.renderer import Options
    from .services import Services

# The server's modules (the web app, WebRTC, DICOM) are imported by the commands that use them:
# `verify`, which a records office runs offline, starts in a fraction of a second.

log = logging.getLogger("eboard")


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Services]:
    """The services of a one-off command: the schema brought up to date first, the database
    (and any export workers) closed after."""
    from .services import Services

    services = Services.build(settings)
    try:
        await services.db.migrate()
        yield services
    finally:
        await services.renderer.close()
        await services.db.close()


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"EBOARD_{name}", default)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=_env("DATA_DIR", "data"),
        help="directory for the SQLite database, keys and files (EBOARD_DATA_DIR)",
    )
    p.add_argument(
        "--database-url",
        default=_env("DATABASE_URL"),
        help="sqlite+aiosqlite:///… or postgresql+asyncpg://… (EBOARD_DATABASE_URL)",
    )


def _rendering(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--export-workers",
        default=_env("EXPORT_WORKERS", "0"),
        help="processes that make PDF/FHIR/HL7 exports; 0: one per core but one, at most 4 "
        "(EBOARD_EXPORT_WORKERS)",
    )


def _serving(p: argparse.ArgumentParser) -> None:
    _common(p)
    _rendering(p)
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="EBOARD_HOST")
    p.add_argument("--port", default=_env("PORT", "8080"), help="EBOARD_PORT")
    p.add_argument(
        "--public-url",
        default=_env("PUBLIC_URL"),
        help="URL browsers use to reach the server, for links (EBOARD_PUBLIC_URL)",
    )
    p.add_argument(
        "--client-dir", default=_env("CLIENT_DIR"), help="built client (EBOARD_CLIENT_DIR)"
    )
    p.add_argument("--tls-cert", default=_env("TLS_CERT"), help="PEM certificate (EBOARD_TLS_CERT)")
    p.add_argument("--tls-key", default=_env("TLS_KEY"), help="PEM private key (EBOARD_TLS_KEY)")
    p.add_argument(
        "--media",
        choices=["worker", "in-process"],
        default=_env("MEDIA", "worker"),
        help="run the SFU in its own process (default) or in the server's (EBOARD_MEDIA)",
    )
    p.add_argument(
        "--pacs-url",
        default=_env("PACS_URL"),
        help="the hospital PACS's DICOMweb root, for imaging import (EBOARD_PACS_URL)",
    )
    p.add_argument(
        "--max-imaging-upload-bytes",
        default=_env("MAX_IMAGING_UPLOAD_BYTES", str(2 * 1024**3)),
        help="the largest imaging upload, STOW-RS request or PACS import, in bytes "
        "(EBOARD_MAX_IMAGING_UPLOAD_BYTES)",
    )
    p.add_argument(
        "--uploads-per-user",
        default=_env("UPLOADS_PER_USER", "2"),
        help="uploads one user may have in flight at once (EBOARD_UPLOADS_PER_USER)",
    )
    p.add_argument(
        "--last-n",
        default=_env("LAST_N", "6"),
        help="video from the N most recent speakers plus the presenter (EBOARD_LAST_N)",
    )
    p.add_argument(
        "--stun-url",
        action="append",
        default=[u for u in _env("STUN_URLS").split(",") if u],
        help="STUN server for participants, repeatable (EBOARD_STUN_URLS, comma-separated)",
    )
    p.add_argument(
        "--turn-url",
        action="append",
        default=[u for u in _env("TURN_URLS").split(",") if u],
        help="coturn URL, repeatable, e.g. turn:turn.example.org:3478 (EBOARD_TURN_URLS)",
    )
    p.add_argument(
        "--turn-secret",
        default=_env("TURN_SECRET"),
        help="coturn static-auth-secret for REST-API credentials (EBOARD_TURN_SECRET)",
    )
    p.add_argument(
        "--insecure-http",
        action="store_true",
        default=_env("INSECURE_HTTP") == "1",
        help="plain HTTP on a non-loopback address, behind a TLS proxy (EBOARD_INSECURE_HTTP=1)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m server", description="eBoard server")
    sub = root.add_subparsers(dest="command", required=True)
    _serving(sub.add_parser("serve", help="run the server"))
    demo = sub.add_parser("demo", help="seed demo data (once) and run the server")
    _serving(demo)
    demo.add_argument("--demo-password", default=_env("DEMO_PASSWORD", DEMO_PASSWORD))
    demo.add_argument("--seed-only", action="store_true", help="seed, print the logins, exit")
    demo.add_argument(
        "--demo-ct",
        default=_env("DEMO_CT", "120x512"),
        help="size of the synthetic CT, SLICESxPIXELS (e.g. 120x512), or 0 for none",
    )
    _common(sub.add_parser("migrate", help="bring the database schema up to date"))
    _common(sub.add_parser("verify-audit", help="check the audit hash chain"))
    export = sub.add_parser(
        "export",
        help="export agreed plans: one case (--case) or a date range in bulk (--from/--to)",
    )
    _common(export)
    _rendering(export)
    export.add_argument("--case", help="one case: its number (e.g. DEMO-0001) or id")
    export.add_argument("--from", dest="start", help="bulk: first day, YYYY-MM-DD")
    export.add_argument("--to", dest="end", help="bulk: last day, YYYY-MM-DD (inclusive)")
    export.add_argument("--board", type=int, help="bulk: only this board's plans (its id)")
    export.add_argument("--format", required=True, help="pdf, fhir, hl7 or json (signed)")
    export.add_argument(
        "--language", default="both", help="the PDF's language: both (en + zh-CN), en or zh-CN"
    )
    export.add_argument(
        "--audience",
        default="home",
        help="home (with patient identifiers) or external (case number only)",
    )
    export.add_argument(
        "--zone", default="UTC", help="bulk: the time zone of the days (IANA, default UTC)"
    )
    export.add_argument(
        "--out", help="the file (one case; default: its name, here) or directory (bulk)"
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace an existing file, or (bulk) write into a directory that is not empty",
    )
    verify = sub.add_parser("verify", help="check a signed agreed-plan export offline")
    verify.add_argument("file", help="the export file (or one signed version) to check")
    verify.add_argument("--keys", help="trusted keys: a JWKS file as served at /api/keys")
    verify.add_argument(
        "--data-dir",
        default=_env("DATA_DIR", "data"),
        help="without --keys, trust this server's signing-keys.json if it exists",
    )
    keys = sub.add_parser("keys", help="key management")
    keys.add_argument(
        "action",
        choices=["rotate", "rotate-signing"],
        help="rotate: a new field-encryption key; rotate-signing: a new plan-signing key for "
        "--institution (its earlier keys stay published, so plans signed with them verify)",
    )
    _common(keys)
    keys.add_argument("--institution", help="rotate-signing: the institution's code, e.g. HZ")
    user = sub.add_parser("user", help="user management")
    user.add_argument("action", choices=["add"])
    _common(user)
    user.add_argument("--username", required=True)
    user.add_argument("--role", required=True)
    user.add_argument("--institution", required=True, help="institution code, e.g. HZ")
    user.add_argument("--display-name", required=True)
    user.add_argument("--specialty")
    user.add_argument("--email", default="")
    user.add_argument("--password", help="omit to be asked (or set EBOARD_NEW_PASSWORD)")
    return root


def settings_from(args: argparse.Namespace) -> Settings:
    port_text = str(getattr(args, "port", "8080"))
    if not port_text.isdigit():
        raise ConfigError(f"port must be a number, not {port_text!r}")
    kwargs: dict[str, object] = {
        "data_dir": Path(args.data_dir).resolve(),
        "database_url": getattr(args, "database_url", "") or "",
        "host": getattr(args, "host", "127.0.0.1"),
        "port": int(port_text),
        "public_url": getattr(args, "public_url", "") or "",
    }
    if getattr(args, "client_dir", ""):
        kwargs["client_dir"] = Path(args.client_dir).resolve()
    for name in ("tls_cert", "tls_key"):
        if getattr(args, name, ""):
            kwargs[name] = Path(getattr(args, name)).resolve()
    kwargs["insecure_http"] = bool(getattr(args, "insecure_http", False))
    if hasattr(args, "export_workers"):
        workers = str(args.export_workers)
        if not workers.isdigit() or int(workers) > 32:
            raise ConfigError(f"export-workers must be a whole number 0..32, not {workers!r}")
        kwargs["export_workers"] = int(workers)
    if hasattr(args, "media"):
        kwargs["media_worker"] = args.media == "worker"
        kwargs["pacs_url"] = args.pacs_url or ""
        if not str(args.last_n).isdigit() or int(args.last_n) < 1:
            raise ConfigError(f"last-n must be a whole number of at least 1, not {args.last_n!r}")
        kwargs["last_n"] = int(args.last_n)
        for name in ("max_imaging_upload_bytes", "uploads_per_user"):
            value = str(getattr(args, name))
            if not value.isdigit() or int(value) < 1:
                flag = name.replace("_", "-")
                raise ConfigError(f"{flag} must be a whole number of at least 1, not {value!r}")
            kwargs[name] = int(value)
        kwargs["stun_urls"] = tuple(args.stun_url)
        kwargs["turn_urls"] = tuple(args.turn_url)
        kwargs["turn_secret"] = args.turn_secret or ""
    return Settings(**kwargs)  # type: ignore[arg-type]


_SHUTDOWN_SECONDS = 3.0
# How long an idle HTTP connection is kept open (aiohttp's default is 75 s; Chromium keeps a used
# idle one for 5 minutes). Over a 250 ms link a new connection costs a round trip before the
# request: the image a viewer waits for, asked after a quiet minute, found none still open.
_KEEPALIVE_SECONDS = 300.0


def _serve(settings: Settings) -> None:
    from aiohttp import web

    from .app import create_app
    from .tls import ssl_context

    context = ssl_context(settings)
    app = create_app(settings)
    print(f"eBoard on {settings.effective_public_url}  (data in {settings.data_dir})", flush=True)
    app.on_startup.append(_freeze_garbage)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=context,
        access_log=None,
        print=None,
        # Open websockets (every participant's) would otherwise hold a stop up until their
        # clients' ping timeout, 45 s; after this long they are cut and the clients reconnect.
        shutdown_timeout=_SHUTDOWN_SECONDS,
        keepalive_timeout=_KEEPALIVE_SECONDS,
    )


async def _freeze_garbage(_: web.Application) -> None:
    """Everything alive once started (modules, schemas, the app) stays alive: keep it out of the
    collector's full passes, which otherwise stall every live session ~100 ms every minute or so
    under a presenter's 60 Hz view updates (measured by make bench-sync)."""
    gc.collect()
    gc.freeze()


def _ct_size(text: str) -> tuple[int, int]:
    if text == "0":
        return 0, 0
    slices, _, size = text.partition("x")
    if not (
        slices.isdigit() and size.isdigit() and 1 <= int(slices) <= 1000 and 16 <= int(size) <= 2048
    ):
        raise ConfigError(f"demo-ct must look like 120x512 (or 0), not {text!r}")
    return int(slices), int(size)


async def _demo_seed(settings: Settings, password: str, ct: tuple[int, int]) -> bool:
    from sqlmodel import select

    from .demo import seed
    from .models import User

    async with _opened(settings) as services:
        async with services.db.read() as session:
            seeded = (
                await session.exec(select(User).where(User.username == "coordinator"))
            ).first()
        if seeded:
            return False
        await seed(services, password, imaging=ct[0] > 0, slices=ct[0], size=ct[1])
        return True


def _print_logins(settings: Settings, password: str, fresh: bool) -> None:
    from .demo import DEMO_USERS

    url = settings.effective_public_url
    print(
        ("Demo data seeded." if fresh else "Demo data already present; not seeded again.")
        + f"\nOpen {url}/  — logins (password {password!r}):"
    )
    for d in DEMO_USERS:
        print(f"  {d.username:<12} {d.role:<12} {d.display_name}")
    print(f"API: {url}/api/openapi.json   health: {url}/api/health", flush=True)


async def _migrate(settings: Settings) -> None:
    async with _opened(settings):
        pass


async def _verify_audit(settings: Settings) -> int:
    async with _opened(settings) as services, services.db.read() as session:
        count, breaks = await services.audit.verify(session)
    if breaks:
        for b in breaks:
            print(f"audit record {b.record_id}: {b.reason}")
        print(f"audit chain BROKEN: {len(breaks)} problem(s) in {count} records")
        return 1
    print(f"audit chain intact: {count} records")
    return 0


def _verify_plans(args: argparse.Namespace) -> int:
    from .notes.signature import verify_file
    from .signing import FILE_NAME, SigningKeys, keys_from_jwks

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file} ({exc.strerror or exc})") from exc
    data_dir = Path(args.data_dir).resolve()
    if args.keys:
        try:
            trusted = keys_from_jwks(json.loads(Path(args.keys).read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the keys file {args.keys} ({exc})") from exc
    elif (data_dir / FILE_NAME).exists():
        trusted = keys_from_jwks(SigningKeys.load(data_dir).jwks())
    else:
        trusted = None
        print(
            "warning: no trusted keys (--keys, or a data dir with signing-keys.json); checked "
            "with the file's own keys, which proves integrity but not origin",
            file=sys.stderr,
        )
    report = verify_file(data, trusted)
    for note in report.notes:
        print(f"note: {note}")
    if not report.ok:
        for problem in report.problems:
            print(problem)
        print(f"FAILED: {len(report.problems)} problem(s) in {args.file}")
        return 1
    chain = ", hash chain intact" if report.chained else ""
    print(
        f"OK: {report.versions} version(s) of case {report.case}, "
        f"signatures by {', '.join(report.kids)}{chain}"
    )
    return 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    """One case's agreed plan to a file, or every plan of a range of days to a directory (with
    a progress bar); each export audited."""
    from .export.exporter import Exporter
    from .export.renderer import Options

    bulk = args.start is not None or args.end is not None
    if bulk == (args.case is not None):
        raise ConfigError("give either --case, or --from and --to for a bulk export")
    options = Options(args.format, args.language, args.audience)  # refuses unknown values
    async with _opened(settings) as services:
        if bulk:
            return await _export_bulk(services, args, options)
        ref: int | str = int(args.case) if args.case.isdigit() else args.case
        exporter = Exporter(services)
        case_id, job = await exporter.prepare(
            None, ref, format=options.format, language=options.language, audience=options.audience
        )
        out = _export_target(args.out, job.filename, force=args.force)
        data = await services.renderer.render(job)
        await asyncio.to_thread(_write_private, out, data, force=args.force)
        # Audited once the file is there: what the record says was exported, was.
        async with services.db.write() as db:
            await exporter.audit(db, None, case_id, job, via="cli")
        print(
            f"wrote version {job.record.payload['version']} of case {job.case_number}'s agreed "
            f"plan ({options.format}, {options.audience} audience, {len(data)} bytes) to {out}"
        )
        return 0


def _export_target(out: str | None, filename: str, *, force: bool) -> Path:
    """Where one case's export goes: ``out`` (a file, or a directory to put ``filename`` in),
    or ``filename`` here; refused before anything is made if it cannot be written."""
    target = Path(out) if out else Path(filename)
    if target.is_dir():
        target = target / filename
    if not target.parent.is_dir():
        raise ConfigError(f"out: {target.parent} is not a directory")
    if target.exists() and not force:
        raise ConfigError(f"out: {target} exists; choose another name or pass --force")
    return target


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write a file only this user may read (a home-audience export names the patient)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # a replaced file keeps its old mode otherwise
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


async def _export_bulk(services: Services, args: argparse.Namespace, options: Options) -> int:
    from tqdm import tqdm

    from .records.bulk import BulkExport, DirectorySink, new_id, run
    from .records.range import DateRange
    from .records.search import case_ids
    from .scheduling import zone

    days = DateRange.parse(
        args.start, args.end, max_days=services.settings.max_export_range_days, required=True
    )
    if not args.out:
        raise ConfigError("a bulk export needs --out DIR")
    async with services.db.read() as db:
        ids = await case_ids(
            db,
            days,
            board_id=args.board,
            institution_id=None,
            zone=zone(args.zone, "zone"),
            cipher=services.cipher,
        )
    if not ids:
        raise ConfigError(f"no agreed plans were signed between {days.start} and {days.end}")
    sink = DirectorySink(Path(args.out), force=args.force)
    job = BulkExport(
        id=new_id(),
        owner_id=None,
        options=options,
        days=days,
        zone=args.zone,
        board_id=args.board,
        case_ids=ids,
    )
    with tqdm(total=job.total, unit="plan", desc=f"export {options.format}") as bar:

        def advance(_: BulkExport) -> None:
            bar.update(1)

        await run(services, None, job, sink, via="cli", progress=advance)
    for failure in job.failed:
        print(f"failed: case {failure['case']}: {failure['error']}", file=sys.stderr)
    print(
        f"wrote {len(job.files)} agreed plan(s) ({options.format}) and manifest.json to {args.out}"
        + (f"; {len(job.failed)} failed" if job.failed else "")
    )
    return 1 if job.failed else 0


async def _user_add(settings: Settings, args: argparse.Namespace) -> None:
    from sqlmodel import select

    from .accounts import create_user
    from .models import Institution

    password = args.password or os.environ.get("EBOARD_NEW_PASSWORD") or getpass.getpass()
    async with _opened(settings) as services:
        async with services.db.write() as session:
            inst = (
                await session.exec(select(Institution).where(Institution.code == args.institution))
            ).first()
            if inst is None or inst.id is None:
                raise ConfigError(f"institution {args.institution!r} does not exist")
            user = await create_user(
                session,
                services,
                username=args.username,
                password=password,
                display_name=args.display_name,
                role=args.role,
                institution_id=inst.id,
                specialty=args.specialty,
                email=args.email,
            )
            await services.audit.append(
                session,
                actor_id=None,
                action="user.create",
                target_type="user",
                target_id=user.id,
                detail={"role": user.role, "via": "cli"},
            )
        print(f"user {args.username} added")


async def _rotate_field_key(settings: Settings) -> None:
    """A new active field-encryption key, audited (field_key.rotate). A running server keeps
    the key ring it started with: restart it, or what others encrypt with the new key is
    unreadable to it."""
    async with _opened(settings) as services:
        async with services.db.write() as session:
            ring = services.keys.rotate()
            await services.audit.append(
                session,
                actor_id=None,
                action="field_key.rotate",
                target_type="key_ring",
                target_id=ring.active_field_key,
                detail={"via": "cli"},
            )
    print(f"active field key is now {ring.active_field_key}; restart a running server")


async def _rotate_signing(settings: Settings, code: str | None) -> None:
    """A new active signing key for one institution's plans, audited; running servers pick it
    up from the key file at their next signature."""
    from sqlmodel import select

    from .models import Institution

    if not code:
        raise ConfigError("rotate-signing needs --institution CODE (e.g. HZ)")
    async with _opened(settings) as services:
        async with services.db.write() as session:
            found = (
                await session.exec(select(Institution).where(Institution.code == code))
            ).first()
            if found is None:
                raise ConfigError(f"institution: there is no institution {code!r}")
            kid = services.signing.rotate(code)
            await services.audit.append(
                session,
                actor_id=None,
                action="signing_key.rotate",
                target_type="institution",
                target_id=found.id,
                detail={"kid": kid, "via": "cli"},
            )
        print(f"{code}'s plans are now signed with key {kid}; its earlier keys stay published")


def _private_data_dir(path: Path) -> None:
    """The data dir, made if missing, 0700 even if it was made before."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    except OSError as exc:
        raise ConfigError(f"data-dir {path} cannot be made private ({exc.strerror})") from exc


def main(argv: list[str] | None = None) -> int:
    # Everything the server writes is its user's alone: files 0600, folders 0700 (the
    # database and its WAL, imaging, keys, exports, temporary files).
    os.umask(0o077)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "verify":
            return _verify_plans(args)
        settings = settings_from(args)
        _private_data_dir(settings.data_dir)
        if args.command == "serve":
            _serve(settings)
        elif args.command == "demo":
            fresh = asyncio.run(_demo_seed(settings, args.demo_password, _ct_size(args.demo_ct)))
            _print_logins(settings, args.demo_password, fresh)
            if not args.seed_only:
                _serve(settings)
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
            print("database is up to date")
        elif args.command == "verify-audit":
            return asyncio.run(_verify_audit(settings))
        elif args.command == "export":
            return asyncio.run(_export(settings, args))
        elif args.command == "user":
            asyncio.run(_user_add(settings, args))
        elif args.command == "keys" and args.action == "rotate":
            asyncio.run(_rotate_field_key(settings))
        elif args.command == "keys":
            asyncio.run(_rotate_signing(settings, args.institution))
    except ConfigError as exc:
        print(f"eboard: {exc}", file=sys.stderr)
        return 2
    except EboardError as exc:
        print(f"eboard: {exc.detail}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
