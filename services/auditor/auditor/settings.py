"""auditor settings, and ``load``: the settings or one line saying why the auditor won't start."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError, field_validator

from auditor.personal import SETTING, parse_keys
from common.settings import ServiceSettings

__all__ = ["Settings", "load"]


class Settings(ServiceSettings):
    http_port: int = 8083
    #: The data key (``MLC_AUDITOR_DATA_KEY``): one or more Fernet keys, newest first, that
    #: hash recipients and seal message texts (``auditor.personal``). No default: without it
    #: the trail would have to keep people in clear, so the auditor does not start.
    auditor_data_key: SecretStr
    #: Bearer token of the admin API (``/admin/...``: failures, retries, message texts,
    #: purges) and of ``/trail``. Unset, every route answers 403.
    auditor_admin_token: SecretStr | None = None
    #: Optional read-only token: opens ``/trail`` (masked, no texts) and nothing else, for a
    #: dashboard that should not hold the admin token.
    auditor_read_token: SecretStr | None = None
    #: A notification sent this long ago without a final status gets its status fetched.
    auditor_status_check_after_seconds: float = 900.0
    #: How often the auditor looks for such notifications, and how often each is asked.
    auditor_status_check_interval_seconds: float = 60.0
    auditor_status_checks_max: int = 3
    #: Days a notification (its attempts, statuses) and an inbound message are kept after their
    #: last update: 400, about 13 months, so a yearly audit still finds the whole previous
    #: year. 0 keeps everything (retention is then the operator's: ``mlc audit purge``).
    auditor_retention_days: int = Field(default=400, ge=0)
    #: How often the retention is applied (daily).
    auditor_retention_interval_seconds: float = Field(default=86400.0, gt=0)
    #: Deliveries of auditor.events handled at once.
    auditor_prefetch: int = 100
    #: Most records of concurrent deliveries written in one transaction (1: one each).
    auditor_group_commit_max: int = Field(default=100, ge=1)

    @field_validator("auditor_data_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        parse_keys(value)  # ValueError naming the setting, never the key
        return value

    def needed_credentials(self) -> tuple[str, ...]:
        """The app's client id, which the re-read events of a retry carry as Exact's would."""
        return ("exact_client_id",)


def _problem(exc: ValidationError) -> str:
    """The first problem as one line: ``MLC_<FIELD>``: what is wrong (never the value)."""
    error = exc.errors(include_input=False, include_url=False)[0]
    name = "MLC_" + "_".join(str(part) for part in error["loc"]).upper()
    if error["type"] == "missing" and name == SETTING:
        return (
            f"{SETTING} is not set: give one or more Fernet keys, newest first "
            '(python -c "from common.crypto import generate_key; print(generate_key())")'
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    return message if message.startswith(name) else f"{name}: {message}"


def load() -> Settings:
    """The settings; SystemExit with one line naming the setting when one is missing or
    wrong (a data key that is not a Fernet key, above all), before anything is opened."""
    try:
        return Settings()  # the data key comes from the environment
    except ValidationError as exc:
        raise SystemExit(f"mlc-auditor: cannot start: {_problem(exc)}") from None
