#!/usr/bin/env bash
# CI service: a local PostgreSQL cluster for the job service's tests (docs/service.md).
# Starts (creating it if needed) the newest installed version's cluster "main", makes a role and
# a database "deepseek_test" owned by it (each test makes a schema of its own inside), and
# publishes DEEPSEEK_TEST_POSTGRES_URL to "$CI_SERVICES_ENV" (stdout when unset) only once a
# connection with that URL works. Idempotent: a running cluster, an existing role or database
# is reused; the role's password is new on every run. Needs root (pg_ctlcluster as postgres).
set -euo pipefail
ROLE=deepseek_test
DB=deepseek_test
version=$(ls /usr/lib/postgresql 2> /dev/null | sort -n | tail -n 1)
if [ -z "$version" ] || ! command -v pg_ctlcluster > /dev/null; then
    echo "postgres: no PostgreSQL server installed (apt-get install postgresql)" >&2
    exit 1
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main > /dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    pg_ctlcluster "$version" main start
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
psql_su() { runuser -u postgres -- psql -p "$port" -X -q -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 1 30); do  # the server accepts connections a moment after it starts
    psql_su -d postgres -c "select 1" > /dev/null 2>&1 && break
    sleep 1
done
password=$(head -c 18 /dev/urandom | base64 | tr '+/' 'AB')
psql_su -d postgres <<SQL
SELECT 'CREATE ROLE $ROLE LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE')\gexec
ALTER ROLE $ROLE LOGIN PASSWORD '$password';
SELECT 'CREATE DATABASE $DB OWNER $ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB')\gexec
SQL
url="postgresql+psycopg://$ROLE:$password@127.0.0.1:$port/$DB"
PGPASSWORD="$password" psql -h 127.0.0.1 -p "$port" -U "$ROLE" -d "$DB" -X -q -c "select 1" > /dev/null
echo "postgres: PostgreSQL $version on 127.0.0.1:$port, database $DB, role $ROLE"
if [ -n "${CI_SERVICES_ENV:-}" ]; then
    echo "DEEPSEEK_TEST_POSTGRES_URL=$url" >> "$CI_SERVICES_ENV"
else
    echo "DEEPSEEK_TEST_POSTGRES_URL=$url"
fi
