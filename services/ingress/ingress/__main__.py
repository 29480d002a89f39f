"""``mlc-ingress``: the webhook front door (Exact, Twilio)."""

from __future__ import annotations

from aiohttp import web

from common.logging import configure_logging
from common.runtime import cannot_start, loop_factory, prepare_process
from ingress.app import create_app
from ingress.settings import Settings


def main() -> None:
    settings = Settings()
    settings.refuse_unsafe_credentials("ingress")
    configure_logging("ingress", json=settings.log_json, level=settings.log_level)
    prepare_process("ingress")
    factory = loop_factory()
    try:
        web.run_app(
            create_app(settings),
            host=settings.http_host,
            port=settings.http_port,
            access_log=None,
            # aiohttp stops accepting, then lets requests in flight finish within the grace.
            shutdown_timeout=settings.shutdown_grace_seconds,
            print=None,
            loop=factory() if factory else None,
        )
    except OSError as exc:  # the broker unreachable, the port in use: one line, no traceback
        raise cannot_start("ingress", exc) from None


if __name__ == "__main__":
    main()
