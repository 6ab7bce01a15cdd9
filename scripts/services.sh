#!/usr/bin/env bash
# Installs and starts what the tests need when it is not already there: a Redis server on
# 127.0.0.1:6379, Debian's Chromium (the browser tests), nginx (the deployment how-to), Prometheus
# (the metrics end-to-end test starts private servers of it) and Python's docs inventory (intersphinx).
set -euo pipefail
redis_up() { python3 - <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", 6379), 1)
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
if ! redis_up; then
    command -v redis-server >/dev/null || apt_install redis-server
    echo "services: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --logfile /tmp/qakeapi-redis.log
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
    redis_up || { echo "services: Redis did not start; see /tmp/qakeapi-redis.log" >&2; exit 1; }
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "services: installing Chromium"
    apt_install chromium
fi
if ! command -v nginx >/dev/null; then
    echo "services: installing nginx (the deployment how-to's reader test)"
    apt_install --no-install-recommends nginx-light
fi
if ! command -v prometheus >/dev/null; then
    echo "services: installing Prometheus (the metrics end-to-end test)"
    apt_install --no-install-recommends prometheus
fi
if [ ! -f /usr/share/doc/python3.11/html/objects.inv ]; then
    echo "services: installing the Python documentation inventory"
    apt_install python3.11-doc
fi
