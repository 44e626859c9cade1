#!/bin/bash
# PostgreSQL init script (the official image runs /docker-entrypoint-initdb.d/*.sh once, on an
# empty data directory): one role and one database per Pitcrew app.
#
# Each role owns only its own database; CONNECT (and TEMP, CREATE) on every Pitcrew database is
# revoked from PUBLIC, so a service's credentials cannot even open another service's database.
# Passwords come from PITCREW_<APP>_DB_PASSWORD (see .env.example). Runs as the superuser
# ($POSTGRES_USER); also usable by hand against any server:  PGHOST=... PGUSER=... ./10-pitcrew-databases.sh
set -euo pipefail

export PGUSER="${PGUSER:-${POSTGRES_USER:-postgres}}"
apps="${PITCREW_DATABASES:-gateway budget workflow kpi registry notify}"
admin_db="${POSTGRES_DB:-postgres}"

for app in $apps; do
    var="PITCREW_${app^^}_DB_PASSWORD"
    password="${!var:-}"
    if [ -z "$password" ]; then
        echo "pitcrew-init: $var is not set; refusing to create role $app without a password" >&2
        exit 1
    fi
    # psql variables (:"name" quotes an identifier, :'name' a literal) keep the values out of the SQL text.
    psql -q -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$admin_db" -v app="$app" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE', :'app', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app', :'app')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'app') \gexec
REVOKE ALL ON DATABASE :"app" FROM PUBLIC;
GRANT ALL ON DATABASE :"app" TO :"app";
SQL
    # Inside its database the role owns the public schema; nobody else may use it.
    psql -q -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$app" -v app="$app" <<'SQL'
ALTER SCHEMA public OWNER TO :"app";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SQL
    echo "pitcrew-init: role and database '$app' ready"
done

# The maintenance database is no place for the services either.
psql -q -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$admin_db" -v db="$admin_db" <<'SQL'
REVOKE CONNECT, TEMPORARY ON DATABASE :"db" FROM PUBLIC;
SQL
