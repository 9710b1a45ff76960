-- Run once by the postgres image on the primary's first start: the replication role and
-- the application database. Passwords come from the compose environment (see .env.example).
\set repl_pw `echo "$REPLICATION_PASSWORD"`
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'repl_pw';
