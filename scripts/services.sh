#!/usr/bin/env bash
# Make sure RabbitMQ and PostgreSQL answer at MLC_AMQP_URL / MLC_DATABASE_URL (defaults:
# 127.0.0.1). When they do not: start the docker-compose ones if a Docker engine answers, or
# the locally installed packages otherwise; if neither is possible, say what to do.
set -uo pipefail
cd "$(dirname "$0")/.."
probe() { .venv/bin/python scripts/probe_services.py "$@"; }

missing=$(probe --quiet) && exit 0
echo "not reachable: $missing; trying to start them" >&2
if docker info >/dev/null 2>&1; then
  docker compose up -d --wait rabbitmq postgres >&2
elif command -v rabbitmq-server >/dev/null 2>&1 || command -v pg_ctlcluster >/dev/null 2>&1; then
  case "$missing" in *RabbitMQ*)
    command -v rabbitmq-server >/dev/null 2>&1 && rabbitmq-server -detached >&2 ;; esac
  case "$missing" in *PostgreSQL*)
    if command -v pg_ctlcluster >/dev/null 2>&1; then
      for v in /etc/postgresql/*; do pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start >&2 || true; done
    fi ;; esac
fi
if ! missing=$(probe --wait 60); then
  echo "ml-connector needs RabbitMQ and PostgreSQL: $missing is not reachable. Start it (e.g. 'docker compose up -d rabbitmq postgres', or install the rabbitmq-server and postgresql packages) or set MLC_AMQP_URL / MLC_DATABASE_URL." >&2
  exit 1
fi
