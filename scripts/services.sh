#!/usr/bin/env bash
# Makes sure Redis, PostgreSQL and RabbitMQ (the Celery broker) answer on 127.0.0.1;
# starts them when they are installed but stopped, and says how to get them otherwise.
set -euo pipefail
redis_host=127.0.0.1 redis_port=6379 pg_port=5432 amqp_port=5672

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

if ! amqp_up; then
  if command -v rabbitmq-server >/dev/null; then
    echo "==> starting RabbitMQ"
    if command -v service >/dev/null && service rabbitmq-server start >/dev/null 2>&1; then :
    else rabbitmq-server -detached >/dev/null 2>&1 || true
    fi
    for _ in $(seq 300); do amqp_up && break; sleep 0.1; done
  fi
  # Only the Celery test needs it, and it says why it is skipped: warn, do not fail.
  amqp_up || echo "RabbitMQ is not running on 127.0.0.1:$amqp_port and could not be started;" \
    "the Celery test will be skipped. Install it (apt-get install rabbitmq-server) and" \
    "start it: service rabbitmq-server start" >&2
fi
