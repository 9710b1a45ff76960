#!/bin/sh
# Streaming replica: clone the primary with pg_basebackup on first start, then run as a
# hot standby. The primary's address and the replication password come from the environment.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -p 5432; do sleep 1; done
  export PGPASSWORD="$REPLICATION_PASSWORD"
  pg_basebackup -h "$PRIMARY_HOST" -p 5432 -U replicator -D "$PGDATA" -R -X stream -c fast
  echo "hot_standby_feedback = on" >>"$PGDATA/postgresql.auto.conf"
  chmod 700 "$PGDATA"
fi
exec postgres
