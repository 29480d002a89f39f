"""``mlc-token-keeper``: hands out Exact access tokens and rotates them safely."""

from __future__ import annotations

import functools

from common.logging import configure_logging
from common.runtime import run_until_stopped
from token_keeper import app
from token_keeper.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("token-keeper", json=settings.log_json, level=settings.log_level)
    run_until_stopped("token-keeper", functools.partial(app.run, settings))


if __name__ == "__main__":
    main()
