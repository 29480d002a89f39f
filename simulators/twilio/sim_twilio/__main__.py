"""``mlc-sim-twilio`` / ``python -m sim_twilio``: serve the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import logging

from aiohttp import web

from common.runtime import loop_factory, prepare_process
from sim_twilio.app import create_app
from sim_twilio.observe import PathOnlyAccessLogger
from sim_twilio.settings import Settings

__all__ = ["main"]


def main() -> None:
    """Build the settings once and serve; ``run_app`` turns SIGTERM into a graceful stop."""
    settings = Settings()
    logging.basicConfig(level=settings.log_level)
    # as the services do (uvloop, the collector's thresholds): the simulator must not be what
    # a benchmark of the pipeline measures
    prepare_process("sim-twilio")
    factory = loop_factory()
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        handle_signals=True,
        shutdown_timeout=5.0,
        access_log_class=PathOnlyAccessLogger,
        print=None,
        loop=factory() if factory else None,
    )


if __name__ == "__main__":
    main()
