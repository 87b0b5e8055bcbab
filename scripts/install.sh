#!/bin/sh
# Install Infra-Core on a fresh Debian or Ubuntu host from this checkout: the packages it needs, a copy
# under /opt/infracore with its own venv, and the systemd service (`fsctl install-service`).
#
#   sudo scripts/install.sh [--user NAME] [--prefix DIR] [--no-ui] [--dry-run]
#
# --user NAME  run the platform as this dedicated system user (created if missing) with only
#              CAP_NET_BIND_SERVICE; default root, which managing Docker and systemd units needs
# --prefix DIR where to install (default /opt/infracore)
# --no-ui      skip the web console's build (no Node.js needed; the API and CLI work without it)
# --dry-run    print each step instead of running it
set -eu

PREFIX=/opt/infracore
SVC_USER=
UI=1
DRY=0
OS_RELEASE=${INFRACORE_OS_RELEASE:-/etc/os-release}
SRC=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)

die() { echo "install.sh: error: $*" >&2; exit 1; }
step() { echo "==> $*"; }
run() {
    if [ "$DRY" = 1 ]; then echo "    $*"; else "$@"; fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --user) [ $# -ge 2 ] || die "--user needs a name"; SVC_USER=$2; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
        --no-ui) UI=0; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path, not $PREFIX" ;; esac
[ -r "$OS_RELEASE" ] || die "cannot read $OS_RELEASE: this installer is for Debian and Ubuntu"
ID=''; ID_LIKE=''; VERSION_ID=''
# shellcheck disable=SC1090
. "$OS_RELEASE"
case " $ID $ID_LIKE " in
    *" debian "*|*" ubuntu "*) ;;
    *) die "this installer is for Debian and Ubuntu, not '$ID'; install by hand: README, 'Install'" ;;
esac
if [ "$DRY" = 0 ]; then
    [ "$(id -u)" = 0 ] || die "run it as root (sudo $0 $*)"
    [ -d /run/systemd/system ] || die "systemd is not running here; run 'fsctl serve' under your own supervisor"
fi
if [ ! -f "$SRC/pyproject.toml" ] || [ ! -d "$SRC/fsctl" ]; then die "$SRC is not an Infra-Core checkout"; fi

PKGS="make python3 python3-venv python3-dev gcc ca-certificates"
[ "$UI" = 1 ] && PKGS="$PKGS nodejs npm"
step "packages ($ID $VERSION_ID): $PKGS"
run apt-get update -qq
# shellcheck disable=SC2086
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PKGS

step "copy $SRC to $PREFIX"
run mkdir -p "$PREFIX"
if [ "$DRY" = 1 ]; then
    echo "    tar -C $SRC --exclude=./.venv --exclude=./ui/node_modules --exclude=./.git -c . | tar -C $PREFIX -x"
else
    tar -C "$SRC" --exclude=./.venv --exclude=./ui/node_modules --exclude=./.git -c . | tar -C "$PREFIX" -x
fi

step "venv, dependencies and the compiled gate in $PREFIX/.venv"
run make -C "$PREFIX" install UI="$UI"

if [ -n "$SVC_USER" ]; then
    if id "$SVC_USER" >/dev/null 2>&1; then
        step "user $SVC_USER exists"
    else
        step "create the system user $SVC_USER"
        run useradd --system --home-dir /var/lib/infracore --shell /usr/sbin/nologin "$SVC_USER"
    fi
    step "the systemd service, running as $SVC_USER"
    run "$PREFIX/.venv/bin/fsctl" install-service --user "$SVC_USER"
else
    step "the systemd service, running as root"
    run "$PREFIX/.venv/bin/fsctl" install-service
fi

cat <<DONE
==> done. Next:
    $PREFIX/.venv/bin/fsctl doctor                      # what this host still needs, each with a fix
    cat /var/lib/infracore/initial-admin-password      # the first admin's password, then:
    $PREFIX/.venv/bin/fsctl login --server http://127.0.0.1:7070
    ssh -L 7070:127.0.0.1:7070 this-host               # the console, from your machine
DONE
