"""``mlc-auditor``: keeps the audit trail of every notification and delivery status."""

from __future__ import annotations

import functools

from auditor import app
from auditor.settings import load
from common.logging import configure_logging
from common.runtime import run_until_stopped


def main() -> None:
    settings = load()  # exits with one line without MLC_AUDITOR_DATA_KEY
    settings.refuse_unsafe_credentials("auditor")
    configure_logging("auditor", json=settings.log_json, level=settings.log_level)
    run_until_stopped("auditor", functools.partial(app.run, settings))


if __name__ == "__main__":
    main()
