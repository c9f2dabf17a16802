#!/usr/bin/env bash
# Makes sure Redis, PostgreSQL, PgBouncer (in front of Dagster's PostgreSQL) and RabbitMQ
# (the Celery broker) answer on 127.0.0.1; starts them when they are installed but
# stopped, and says how to get them otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
redis_host=127.0.0.1 redis_port=6379 pg_port=5432 amqp_port=5672 pgbouncer_port=6432

# Debian's package, when this runs as root with apt (CI, a fresh machine); quiet otherwise.
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
  echo "==> installing Debian's $1"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >"/tmp/ecosync-apt-$1.log" 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q "$1" >"/tmp/ecosync-apt-$1.log" 2>&1; } \
    || echo "could not install $1 (see /tmp/ecosync-apt-$1.log)" >&2
}

redis_up() { redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; }
pg_up() { pg_isready -h 127.0.0.1 -p "$pg_port" >/dev/null 2>&1; }
amqp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$amqp_port") >/dev/null 2>&1; }

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "==> starting Redis on $redis_host:$redis_port"
    mkdir -p /tmp/ecosync-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" \
      --appendonly no --dir /tmp/ecosync-redis --logfile /tmp/ecosync-redis/redis.log
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || { echo "Redis is not running on $redis_host:$redis_port and could not be started." \
    "Install it (apt-get install redis-server) or start it: redis-server --port $redis_port" >&2; exit 3; }
fi

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  fi
  pg_up || { echo "PostgreSQL is not running on 127.0.0.1:$pg_port and could not be started." \
    "Install it (apt-get install postgresql) and start it, with a 'postgres' role allowed" \
    "from 127.0.0.1 (or set ECOSYNC_TEST_POSTGRES_URL)." >&2; exit 3; }
fi

pgbouncer_up() { pg_isready -h 127.0.0.1 -p "$pgbouncer_port" -U postgres -d postgres >/dev/null 2>&1; }
if ! pgbouncer_up; then
  command -v pgbouncer >/dev/null || apt_install pgbouncer
  if command -v pgbouncer >/dev/null; then
    echo "==> starting PgBouncer on 127.0.0.1:$pgbouncer_port (data/pgbouncer.ini)"
    dir=/tmp/ecosync-pgbouncer
    mkdir -p "$dir"
    # The local PostgreSQL trusts its users; PgBouncer still wants them listed.
    printf '"postgres" ""\n' > "$dir/userlist.txt"
    { cat "$root/data/pgbouncer.ini"
      printf 'logfile = %s\npidfile = %s\nauth_file = %s\n' \
        "$dir/pgbouncer.log" "$dir/pgbouncer.pid" "$dir/userlist.txt"; } > "$dir/pgbouncer.ini"
    # PgBouncer refuses to run as root: it runs as PostgreSQL's own user then.
    as=()
    if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
      chown -R postgres "$dir"; as=(-u postgres)
    fi
    pgbouncer -d "${as[@]}" "$dir/pgbouncer.ini" || true
    for _ in $(seq 50); do pgbouncer_up && break; sleep 0.1; done
  fi
  pgbouncer_up || { echo "PgBouncer is not running on 127.0.0.1:$pgbouncer_port and could not" \
    "be started (log: /tmp/ecosync-pgbouncer/pgbouncer.log). Install it (apt-get install" \
    "pgbouncer) and run this script again." >&2; exit 3; }
fi

if ! amqp_up; then
  if command -v rabbitmq-server >/dev/null; then
    echo "==> starting RabbitMQ"
    if command -v service >/dev/null && service rabbitmq-server start >/dev/null 2>&1; then :
    else rabbitmq-server -detached >/dev/null 2>&1 || true
    fi
    for _ in $(seq 300); do amqp_up && break; sleep 0.1; done
  fi
  amqp_up || { echo "RabbitMQ is not running on 127.0.0.1:$amqp_port and could not be started." \
    "Install it (apt-get install rabbitmq-server) and start it: rabbitmq-server -detached" >&2
    exit 3; }
fi
