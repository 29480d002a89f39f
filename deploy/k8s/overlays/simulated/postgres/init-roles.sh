#!/bin/sh
# Run once by the postgres image when it creates the database (docker-entrypoint-initdb.d):
# one login role per schema owner, with the password from the postgres-roles Secret. Each
# creates and then owns its own schema (common.db.migrate), so no role can read another's.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v enricher="$MLC_DB_PASSWORD_ENRICHER" \
    -v dispatcher="$MLC_DB_PASSWORD_DISPATCHER" \
    -v auditor="$MLC_DB_PASSWORD_AUDITOR" \
    -v token_keeper="$MLC_DB_PASSWORD_TOKEN_KEEPER" <<'SQL'
CREATE ROLE mlc_enricher LOGIN PASSWORD :'enricher';
CREATE ROLE mlc_dispatcher LOGIN PASSWORD :'dispatcher';
CREATE ROLE mlc_auditor LOGIN PASSWORD :'auditor';
CREATE ROLE mlc_token_keeper LOGIN PASSWORD :'token_keeper';
-- CREATE SCHEMA IF NOT EXISTS needs CREATE on the database, even when the schema exists.
GRANT CONNECT, CREATE ON DATABASE mlc TO mlc_enricher, mlc_dispatcher, mlc_auditor,
    mlc_token_keeper;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SQL
