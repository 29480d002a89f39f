"""Apply one service's schema migrations, then exit: the command of that service's migration
Job (``python /opt/mlc/migrate.py <service>``, deploy/k8s/base/migrations.yaml).

Each service also migrates its schema when it starts (``common.db.migrate`` under an advisory
lock, so replicas never race). Running the Job first, and waiting for it, means a rollout
starts on a schema that is already there, and a migration that fails stops the release before
any pod of the new version runs. It reads the service's own settings, so it connects as that
service's database role, with that service's Secret.
"""

from __future__ import annotations

import asyncio
import sys

from common import db

#: service -> (schema, package holding ``migrations/*.sql``, settings module)
SCHEMAS = {
    "enricher": ("enricher", "enricher", "enricher.settings"),
    "dispatcher": ("dispatch", "dispatcher", "dispatcher.settings"),
    "auditor": ("audit", "auditor", "auditor.settings"),
    "token-keeper": ("tokens", "token_keeper", "token_keeper.settings"),
}


async def migrate(service: str) -> list[str]:
    """Apply ``service``'s migrations; returns the versions applied (none: already current)."""
    schema, package, settings_module = SCHEMAS[service]
    settings = __import__(settings_module, fromlist=["Settings"]).Settings()
    async with db.pool(settings.database_url, min_size=1, max_size=1) as pool:
        if service == "auditor":
            # The auditor's last step converts stored data and needs its data key.
            from auditor import schema as audit_schema
            from auditor.personal import PersonalData

            return await audit_schema.migrate(pool, PersonalData(settings.auditor_data_key))
        return await db.migrate(pool, schema, package)


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in SCHEMAS:
        raise SystemExit(f"usage: migrate.py {{{'|'.join(SCHEMAS)}}}")
    applied = asyncio.run(migrate(sys.argv[1]))
    print(f"{sys.argv[1]}: applied {', '.join(applied) if applied else 'nothing (current)'}")


if __name__ == "__main__":
    main()
