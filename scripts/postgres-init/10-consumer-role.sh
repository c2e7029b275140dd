#!/bin/sh
# PostgreSQL image init script (mounted at /docker-entrypoint-initdb.d by docker-compose.yml).
# It runs once, when the data volume is empty, as the image's superuser: in compose that is the
# owner role that runs the migrations (POSTGRES_MIGRATION_USER). It creates the consumer's
# login role (POSTGRES_USER of the service) with no DDL rights at all: `python -m service
# migrate` grants it exactly what its statements need after every migration, and revokes
# TEMPORARY on the database from PUBLIC (a per-database step: MIGRATIONS.md, roles).
set -eu

if [ "$INVENTORY_CONSUMER_USER" = "$POSTGRES_USER" ]; then
  echo "10-consumer-role: the consumer uses the owner role $POSTGRES_USER; nothing to create"
  exit 0
fi

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app="$INVENTORY_CONSUMER_USER" -v app_password="$INVENTORY_CONSUMER_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'app')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app')\gexec
ALTER ROLE :"app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
-- Nobody but the owner creates objects here (already the default from PostgreSQL 15 on).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
echo "10-consumer-role: created the consumer's role $INVENTORY_CONSUMER_USER"
