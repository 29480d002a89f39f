"""``mlc-dispatcher``: sends notifications through Twilio, exactly once per business fact."""

from __future__ import annotations

import functools

from common.logging import configure_logging
from common.runtime import run_until_stopped
from dispatcher import app
from dispatcher.settings import Settings


def main() -> None:
    settings = Settings()
    settings.refuse_unsafe_credentials("dispatcher")
    configure_logging("dispatcher", json=settings.log_json, level=settings.log_level)
    run_until_stopped("dispatcher", functools.partial(app.run, settings))


if __name__ == "__main__":
    main()
