"""The ``plyra-trace`` command: ``serve`` runs the collector; more subcommands (``demo``) later."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Callable, Sequence

_Command = Callable[[argparse.Namespace], int]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    """Run the collector until interrupted (imported lazily: it needs the collector extra)."""
    if not _is_loopback(args.host) and not args.open:
        print(
            f"refusing to listen on {args.host}: API keys are not available yet, so anyone who can"
            " reach it could read and write traces. Pass --open to run without authentication.",
            file=sys.stderr,
        )
        return 2
    try:
        import uvicorn

        from plyra_trace.collector.app import create_app
        from plyra_trace.collector.config import CollectorConfig
    except ImportError as error:
        print(
            f"the collector needs: pip install 'plyra-trace[collector]' ({error})", file=sys.stderr
        )
        return 1
    config = CollectorConfig(
        db_path=args.db,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
    )
    app = create_app(config)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}"
    print(f"plyra-trace collector on {url} (storage: {args.db})", flush=True)
    print(f'  send traces with plyra_trace.init(endpoint="{url}")', flush=True)
    if args.grpc_port is not None:
        print(f"  OTLP/gRPC on {shown}:{args.grpc_port}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    server.run()
    return 0


def _parser() -> argparse.ArgumentParser:
    from plyra_trace.collector.config import DEFAULT_DB, DEFAULT_PORT

    parser = argparse.ArgumentParser(prog="plyra-trace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the collector: OTLP in, JSON API and UI out")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (OTLP, API, UI)")
    serve.add_argument("--db", default=DEFAULT_DB, help="SQLite database file")
    serve.add_argument("--grpc-port", type=int, default=None, help="also accept OTLP/gRPC here")
    serve.add_argument("--max-body-mb", type=float, default=16.0, help="request body limit")
    serve.add_argument("--log-level", default="warning", help="uvicorn log level")
    serve.add_argument("--open", action="store_true", help="allow a non-loopback bind without keys")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand."""
    args = _parser().parse_args(argv)
    run: _Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
