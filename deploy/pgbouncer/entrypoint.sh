#!/bin/sh
# PgBouncer reads client passwords from auth_file; write it from the environment (compose passes
# the database password in; nothing secret is in the image), then become PgBouncer.
set -eu
: "${PGBOUNCER_USER:?set PGBOUNCER_USER}" "${PGBOUNCER_PASSWORD:?set PGBOUNCER_PASSWORD}"
umask 077
mkdir -p /tmp/pgbouncer
# userlist.txt quotes each field in double quotes; a double quote inside is written twice.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
printf '%s %s\n' "$(quote "$PGBOUNCER_USER")" "$(quote "$PGBOUNCER_PASSWORD")" > /tmp/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
