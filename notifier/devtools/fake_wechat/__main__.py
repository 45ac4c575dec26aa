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
    receipts = parser.add_argument_group(
        "delivery receipts", "signed TEMPLATESENDJOBFINISH pushes after each accepted send"
    )
    receipts.add_argument(
        "--callback-url",
        default=defaults.callback_url,
        help="where to push receipts, e.g. http://127.0.0.1:8000/wechat/callback; empty: none",
    )
    receipts.add_argument(
        "--callback-token",
        default=defaults.callback_token,
        help="the token receipts are signed with (the web's WECHAT_CALLBACK_TOKEN)",
    )
    receipts.add_argument(
        "--encoding-aes-key",
        default=defaults.encoding_aes_key,
        help="43-character EncodingAESKey: push in safe mode (the web's WECHAT_ENCODING_AES_KEY)",
    )
    receipts.add_argument(
        "--receipt-delay-ms",
        type=float,
        default=defaults.receipt_delay_ms,
        help="wait before pushing, so the send is recorded before its receipt",
    )
    receipts.add_argument(
        "--blocked-share",
        type=float,
        default=defaults.blocked_share,
        help="share of openids whose receipts say 'failed:user block' (fixed per openid)",
    )
    receipts.add_argument(
        "--system-failed-share",
        type=float,
        default=defaults.system_failed_share,
        help="share of further openids whose receipts say 'failed: system failed'",
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
            callback_url=args.callback_url,
            callback_token=args.callback_token,
            encoding_aes_key=args.encoding_aes_key,
            receipt_delay_ms=args.receipt_delay_ms,
            blocked_share=args.blocked_share,
            system_failed_share=args.system_failed_share,
        )
    except ValueError as error:
        parser.error(str(error))
    # Named only when not the default, so serve's own default stays the one source of it.
    choice = {} if args.server == SERVERS[0] else {"server": args.server}
    serve(config, args.host, args.port, verbose=args.verbose, **choice)


if __name__ == "__main__":
    main()
