"""The ``plyra-trace`` command: ``serve`` runs the collector; more subcommands (``demo``) later."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

_Command = Callable[[argparse.Namespace], int]


def _db(args: argparse.Namespace) -> str:
    """The store to use: ``--db``, else ``$PLYRA_DB``, else the default SQLite file."""
    from plyra_trace.collector.config import DEFAULT_DB

    return str(args.db or os.environ.get("PLYRA_DB") or DEFAULT_DB)


def _open(db: str) -> Any:
    """Open a store, or print one line saying why not (password masked) and return None."""
    from plyra_trace.collector.storage import (
        StorageUnavailable,
        StorageURLError,
        open_storage,
    )
    from plyra_trace.collector.storage._migrate import SchemaTooNew

    try:
        return open_storage(db)
    except (StorageUnavailable, StorageURLError, SchemaTooNew) as error:
        print(f"plyra-trace: {error}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    """Run the collector until interrupted (imported lazily: it needs the collector extra)."""
    try:
        import uvicorn

        from plyra_trace.collector.app import create_app
        from plyra_trace.collector.config import CollectorConfig
        from plyra_trace.collector.hosts import is_loopback
        from plyra_trace.collector.sampling.policy import FLAGS, PolicyError, policy_from_settings
        from plyra_trace.collector.storage import is_postgres, mask_url
    except ImportError as error:
        print(
            f"the collector needs: pip install 'plyra-trace[collector]' ({error})", file=sys.stderr
        )
        return 1
    try:
        sampling = policy_from_settings(args.sampling, {key: getattr(args, key) for key in FLAGS})
    except PolicyError as error:
        print(f"plyra-trace serve: {error}", file=sys.stderr)
        return 2
    db = _db(args)
    if args.workers < 1:
        print("plyra-trace: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and not is_postgres(db):
        print(
            "plyra-trace: --workers needs a PostgreSQL --db (postgresql://...): a SQLite file has"
            " one writer, so it is served by one process",
            file=sys.stderr,
        )
        return 2
    if args.retention_days is not None and args.retention_days <= 0:
        print("plyra-trace: --retention-days must be positive", file=sys.stderr)
        return 2
    # Opening the store here checks it is reachable and migrates it once, before any worker.
    storage = _open(db)
    if storage is None:
        return 1
    public = not is_loopback(args.host)
    try:
        active = [k for k in storage.list_keys() if k["revoked_ns"] is None]
    finally:
        storage.close()
    if public and not args.open and not active:
        print(
            f"refusing to listen on {args.host} without API keys: create one with"
            f" `plyra-trace keys create --db {mask_url(db)}`, or pass --open to run without them.",
            file=sys.stderr,
        )
        return 2
    config = CollectorConfig(
        db_path=db,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_inflight_bytes=int(args.max_inflight_mb * 1024 * 1024),
        require_keys=public and not args.open,
        retention_days=args.retention_days,
        open_access=args.open,
        allowed_hosts=tuple(args.allowed_host),
        sampling=sampling,
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}"
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    print(f"plyra-trace collector on {url} (storage: {mask_url(db)}{workers})", flush=True)
    key_hint = ', api_key="pt_..."' if config.require_keys else ""
    print(f'  send traces with plyra_trace.init(endpoint="{url}"{key_hint})', flush=True)
    if args.grpc_port is not None:
        print(f"  OTLP/gRPC on {shown}:{args.grpc_port}", flush=True)
    if args.open and public:
        names = ", ".join(["loopback names", *args.allowed_host])
        print(f"  answering Host: {names} (add names with --allowed-host)", flush=True)
    if args.workers > 1:
        from plyra_trace.collector import workers as processes

        processes.export_config(config)
        uvicorn.run(
            processes.FACTORY,
            factory=True,
            workers=args.workers,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        return 0
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    # The writer thread and the event loop share the GIL; a shorter switch interval stops the
    # writer from waiting up to 5 ms for the GIL after each SQLite call (~15% more spans/s).
    sys.setswitchinterval(0.001)
    server.run()
    return 0


def _keys(args: argparse.Namespace) -> int:
    """Create, list or revoke API keys in the collector's database."""
    from plyra_trace.collector import auth

    storage = _open(_db(args))
    if storage is None:
        return 1
    try:
        if args.keys_command == "create":
            key_id, token = auth.create_key(storage, args.name)
            print(f"created key {key_id} ({args.name}); it is shown only now:")
            print(token)
        elif args.keys_command == "list":
            for key in storage.list_keys():
                state = "revoked" if key["revoked_ns"] is not None else "active"
                print(f"{key['key_id']}  {state:7}  {key['name']}")
        elif not auth.revoke_key(storage, args.key_id):
            print(f"no active key {args.key_id}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.key_id}")
    finally:
        storage.close()
    return 0


def _sampling_flags(serve: argparse.ArgumentParser) -> None:
    """Tail sampling flags (docs/sampling.md); unset flags leave the --sampling file's values."""
    group = serve.add_argument_group("tail sampling (docs/sampling.md)")
    group.add_argument(
        "--sample-rate",
        type=float,
        metavar="R",
        help="share of ordinary traces whose spans are kept (default 1.0: sampling off)",
    )
    group.add_argument(
        "--keep-cost-above", type=float, metavar="USD", help="keep traces costing more than this"
    )
    group.add_argument(
        "--keep-slower-than",
        dest="keep_slower_than_ms",
        type=float,
        metavar="MS",
        help="keep traces lasting longer than this many milliseconds",
    )
    group.add_argument(
        "--decision-wait",
        type=float,
        metavar="S",
        help="decide a trace once S seconds passed without a new span (default 10)",
    )
    group.add_argument(
        "--sampling", metavar="FILE", help="YAML file with these settings and per-scope rates"
    )


def _parser() -> argparse.ArgumentParser:
    from plyra_trace.collector.config import DEFAULT_MAX_INFLIGHT_MB, DEFAULT_PORT

    db_help = (
        "a SQLite file or postgresql://user:pass@host:port/db"
        " (default: $PLYRA_DB, else plyra-trace.db)"
    )

    parser = argparse.ArgumentParser(prog="plyra-trace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the collector: OTLP in, JSON API and UI out")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (OTLP, API, UI)")
    serve.add_argument("--db", default=None, help=db_help)
    serve.add_argument("--grpc-port", type=int, default=None, help="also accept OTLP/gRPC here")
    serve.add_argument("--max-body-mb", type=float, default=16.0, help="request body limit")
    serve.add_argument(
        "--max-inflight-mb",
        type=float,
        default=DEFAULT_MAX_INFLIGHT_MB,
        help="request bodies held before they are stored; past it ingest answers 503 +"
        f" Retry-After (default {DEFAULT_MAX_INFLIGHT_MB})",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name answered besides loopback ones on a loopback or --open collector"
        " (repeatable; DNS-rebinding defence)",
    )
    serve.add_argument("--log-level", default="warning", help="uvicorn log level")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes serving one port (PostgreSQL only)"
    )
    serve.add_argument(
        "--retention-days",
        type=float,
        default=None,
        help="delete traces older than this many days (at start-up, then every few minutes)",
    )
    serve.add_argument(
        "--open",
        action="store_true",
        help="on a non-loopback address, serve without API keys until one is created"
        " (the Host check then applies)",
    )
    _sampling_flags(serve)
    serve.set_defaults(run=_serve)
    keys = commands.add_parser("keys", help="manage API keys (sent as init(api_key=...))")
    keys.add_argument("--db", default=None, help=db_help)
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", default="default", help="a label for the key")
    listing = key_commands.add_parser("list", help="list keys (ids and names, never secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    for command in (
        create,
        listing,
        revoke,
    ):  # `keys create --db X` as well as `keys --db X create`
        command.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    keys.set_defaults(run=_keys)
    commands.add_parser(
        "demo", help="run the multi-service demo: collector, UI and four agent services"
    )
    return parser


def _demo(argv: Sequence[str]) -> int:
    """Run the multi-service demo from a source checkout (it lives in examples/, not the wheel)."""
    from pathlib import Path

    candidates = [Path.cwd(), Path(__file__).resolve().parents[1]]
    root = next((c for c in candidates if (c / "examples/multi_service/run.py").is_file()), None)
    if root is None:
        print(
            "plyra-trace demo runs from a clone of the repository (examples/multi_service/);"
            " cd into it and try again",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(root))
    from examples.multi_service.run import main as run_demo

    return int(run_demo(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["demo"]:
        return _demo(arguments[1:])
    args = _parser().parse_args(arguments)
    run: _Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
