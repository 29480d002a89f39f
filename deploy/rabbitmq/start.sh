#!/bin/sh
# The compose broker: RabbitMQ loading definitions.json at boot (rabbitmq.conf), then a
# password for each service user from the environment (MLC_AMQP_PASSWORD_<SERVICE>) and an
# administrator for the management UI (mlc-admin, MLC_AMQP_ADMIN_PASSWORD); the well-known
# guest user is removed. Importing definitions leaves the service users without a password, so
# this runs after every boot; the healthcheck passes only once it has ($HOME/mlc-users-ready:
# the script and the healthcheck run as the same container user).
# Passwords never reach the log (rabbitmqctl's output is discarded).
set -eu
ready="$HOME/mlc-users-ready"
rm -f "$ready"

rabbitmq-plugins enable --offline rabbitmq_prometheus rabbitmq_shovel \
    rabbitmq_shovel_management >/dev/null
docker-entrypoint.sh rabbitmq-server &
server=$!
# docker stop: a clean shutdown of the node, then out
trap 'rabbitmqctl -q stop >/dev/null 2>&1 || kill -TERM "$server"; wait "$server"; exit 0' TERM INT

ctl() { rabbitmqctl -q "$@" >/dev/null 2>&1; }

# Up, and the definitions imported (a password set before the import would be reset by it).
until ctl await_startup -t 10 && rabbitmqctl -q list_users 2>/dev/null \
    | grep -q '^mlc-token-keeper[[:space:]]'; do
    kill -0 "$server" 2>/dev/null || exit 1
    sleep 1
done

ctl change_password mlc-ingress "$MLC_AMQP_PASSWORD_INGRESS"
ctl change_password mlc-enricher "$MLC_AMQP_PASSWORD_ENRICHER"
ctl change_password mlc-dispatcher "$MLC_AMQP_PASSWORD_DISPATCHER"
ctl change_password mlc-auditor "$MLC_AMQP_PASSWORD_AUDITOR"
ctl change_password mlc-token-keeper "$MLC_AMQP_PASSWORD_TOKEN_KEEPER"

ctl add_user mlc-admin "$MLC_AMQP_ADMIN_PASSWORD" \
    || ctl change_password mlc-admin "$MLC_AMQP_ADMIN_PASSWORD"
ctl set_user_tags mlc-admin administrator
ctl set_permissions -p / mlc-admin '.*' '.*' '.*'
ctl delete_user guest || true

touch "$ready"
wait "$server"
