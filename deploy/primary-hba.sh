#!/bin/sh
# Lets the replica stream from the primary over the compose network with a password.
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
