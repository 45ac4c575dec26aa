"""Command line entry point, so the fake can run as its own process beside the service."""

import argparse

from .config import FakeConfig
from .server import SERVERS, serve


def _parser() -> argparse.ArgumentParser:
    defaults = FakeConfig()
    parser = argparse.ArgumentParser(
        prog="notifier fake-wechat",
        description="Serve a fake WeChat API for development, tests and benchmarks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8001, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--app-id", default=defaults.app_id, help="the only app id accepted")
    parser.add_argument("--app-secret", default=defaults.app_secret, help="its AppSecret")
    parser.add_argument(
        "--latency-ms", type=float, default=defaults.latency_ms, help="delay added to each send"
    )
    parser.add_argument(
        "--fail-rate", type=float, default=defaults.fail_rate, help="share of sends answered -1"
    )
    parser.add_argument(
        "--token-ttl", type=int, default=defaults.token_ttl, help="token life in seconds"
    )
    parser.add_argument(
        "--dedupe-window",
        type=float,
        default=defaults.dedupe_window,
        help="seconds a client_msg_id is remembered",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=SERVERS[0],
        help="asyncio answers sends in an event loop; threaded uses a thread per connection",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = FakeConfig(
            app_id=args.app_id,
            app_secret=args.app_secret,
            latency_ms=args.latency_ms,
            fail_rate=args.fail_rate,
            token_ttl=args.token_ttl,
            dedupe_window=args.dedupe_window,
        )
    except ValueError as error:
        parser.error(str(error))
    # Named only when not the default, so serve's own default stays the one source of it.
    choice = {} if args.server == SERVERS[0] else {"server": args.server}
    serve(config, args.host, args.port, verbose=args.verbose, **choice)


if __name__ == "__main__":
    main()
