"""``mlc-sim-exact`` / ``python -m sim_exact``: serve the Exact Online simulator."""

from __future__ import annotations

import asyncio

from common.logging import configure_logging
from sim_exact.server import run
from sim_exact.settings import Settings

__all__ = ["main"]


def main() -> None:
    settings = Settings()
    configure_logging("sim-exact", json=settings.log_json, level=settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
