#!/usr/bin/env bash
# PostgreSQL init script for docker-compose.yml, run by the postgres image once, when the data
# volume is empty (/docker-entrypoint-initdb.d). Creates a login role and an owned database for
# MLflow's backend store and for Superset's metadata. Every password comes from the environment
# the compose file passes in; none is written here. Safe to run again: existing roles and
# databases are left as they are.
set -euo pipefail

: "${POSTGRES_USER:?POSTGRES_USER is not set}"
: "${POSTGRES_DB:?POSTGRES_DB is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"
: "${SUPERSET_DB_PASSWORD:?SUPERSET_DB_PASSWORD is not set}"

# create_role_and_database NAME PASSWORD: role NAME (login, with PASSWORD) owning database NAME.
# psql quotes the values itself (:'var' and format's %I / %L), so any password is safe.
create_role_and_database() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=name="$1" --set=password="$2" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SQL
}

create_role_and_database mlflow "$MLFLOW_DB_PASSWORD"
create_role_and_database superset "$SUPERSET_DB_PASSWORD"
