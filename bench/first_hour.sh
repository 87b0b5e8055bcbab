#!/usr/bin/env bash
# `make bench-first-hour`: the first hour as a newcomer lives it, measured on a fresh clone of this
# repository. Prints (1) the time of `make install`; (2) from `fsctl serve` starting to the hello
# service's HTTPS answer through the gate with a certificate chain verified against Pebble's root (goal
# <= 60 s); (3) the idle platform with hello, metrics and the console: RSS and CPU of `fsctl serve` over
# 30 s (goals <= 120 MB, <= 1 % of a core). Everything on loopback; every wait is bounded.
#
#   bench/first_hour.sh [--no-install]   (--no-install: use this checkout's .venv, skip the clone)
set -euo pipefail

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
INSTALL=1
[ "${1:-}" = --no-install ] && INSTALL=0
PEERS_ENV=${PEERS_DIR:-/tmp/infracore-peers}/peers.env
[ -r "$PEERS_ENV" ] || { echo "first_hour.sh: start Pebble first: ../shared/peers/peers.sh start" >&2; exit 2; }
# shellcheck disable=SC1090
. "$PEERS_ENV"

WORK=$(mktemp -d /tmp/infracore-first-hour.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ]; then
        "${FSCTL:-true}" service rm hello >/dev/null 2>&1 || true   # services outlive the platform: remove it first
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$INSTALL" = 1 ]; then
    git clone -q "$ROOT" "$WORK/repo"
    T0=$(now)
    make -C "$WORK/repo" install >"$WORK/install.log" 2>&1 || { tail -20 "$WORK/install.log"; exit 1; }
    echo "make install (fresh clone, UI included):            $(secs "$T0" "$(now)") s"
    APP=$WORK/repo
else
    APP=$ROOT
fi
FSCTL=$APP/.venv/bin/fsctl
PY=$APP/.venv/bin/python
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CONSOLE=$(port)
HTTPS=$(port)
HOST="first-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ').test"
export FSCTL_SERVER=http://127.0.0.1:$CONSOLE XDG_CONFIG_HOME=$WORK/xdg

T0=$(now)
"$FSCTL" serve --data-dir "$WORK/data" --console "127.0.0.1:$CONSOLE" --http-port "$PEBBLE_HTTP01_PORT" \
    --https-port "$HTTPS" --acme-directory "$ACME_DIRECTORY" --acme-ca-bundle "$ACME_CA_BUNDLE" >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do curl -fsS "$FSCTL_SERVER/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
T_READY=$(now)
"$FSCTL" login --user admin --password-stdin <"$WORK/data/initial-admin-password" >/dev/null
sed "s|\${SPEC_DIR}|$APP/examples/hello|" "$APP/examples/hello/hello.yaml" >"$WORK/hello.yaml"
"$FSCTL" service apply -f "$WORK/hello.yaml" --wait 60 >/dev/null
"$FSCTL" route add --host "$HOST" --upstream service:hello --tls auto >/dev/null
ok=0
for _ in $(seq 1 1200); do
    if curl -fsS --max-time 5 --cacert "$PEBBLE_ROOT_PEM" --resolve "$HOST:$HTTPS:127.0.0.1" "https://$HOST:$HTTPS/" \
        -o /dev/null 2>/dev/null; then ok=1; break; fi
    sleep 0.05
done
[ "$ok" = 1 ] || { echo "no verified HTTPS answer within 60 s"; tail -20 "$WORK/serve.log"; exit 1; }
T_HTTPS=$(now)
echo "fsctl serve start -> API ready:                       $(secs "$T0" "$T_READY") s"
echo "fsctl serve start -> hello over verified HTTPS:       $(secs "$T0" "$T_HTTPS") s   (goal <= 60 s)"

sleep 10  # settle: the first probe rollups, certd's first pass
ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
C0=$(ticks); W0=$(now)
sleep 30
C1=$(ticks); W1=$(now)
HZ=$(getconf CLK_TCK)
RSS_KB=$(awk '/VmRSS/ { print $2 }' "/proc/$PID/status")
HWM_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$PID/status")
CPU=$(awk -v c="$((C1 - C0))" -v hz="$HZ" -v w0="$W0" -v w1="$W1" 'BEGIN { printf "%.2f", 100 * c / hz / (w1 - w0) }')
echo "idle fsctl serve (hello, metrics, console), 30 s:     RSS $((RSS_KB / 1024)) MB (peak $((HWM_KB / 1024)) MB, goal <= 120), CPU $CPU % of a core (goal <= 1 %)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
