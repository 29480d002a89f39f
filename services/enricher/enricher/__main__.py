"""``mlc-enricher``: turns Exact change events into notifications to send."""

from __future__ import annotations

import functools

from common.logging import configure_logging
from common.runtime import run_until_stopped
from enricher import app
from enricher.settings import Settings


def main() -> None:
    settings = Settings()
    settings.refuse_unsafe_credentials("enricher")
    configure_logging("enricher", json=settings.log_json, level=settings.log_level)
    run_until_stopped("enricher", functools.partial(app.run, settings))


if __name__ == "__main__":
    main()
