#!/usr/bin/env bash
# harden-ssh.sh — turn off SSH root password login and password authentication, without locking
# the operator out. Shows the change as a diff; changes nothing unless given --apply.
#
# Usage: harden-ssh.sh [--apply] [--user NAME] [--root DIR]
#
#   --user NAME  the account you log in with (default: $SUDO_USER, else the current user)
#   --root DIR   work on the tree under DIR instead of / (tests, images); never reloads sshd
#   --apply      write the change (after `sshd -t` accepts it), back up what it replaces, reload sshd
#   env SSHD     the sshd binary used to validate (default: sshd on PATH, /usr/sbin/sshd)
#
# What it sets:
#   PermitRootLogin no                 when NAME is not root (root logs in through NAME and sudo);
#                  prohibit-password   when NAME is root and root has a key (key-only root login);
#   PasswordAuthentication no, KbdInteractiveAuthentication no
#                                      only when NAME has an authorized key sshd will accept
#                                      (~/.ssh and the key file not writable by others: StrictModes).
# Without such a key it leaves password login as it is and says so: that is how you are getting in.
#
# Where: a drop-in, /etc/ssh/sshd_config.d/00-infracore-hardening.conf, when sshd_config Includes
# that directory before setting any of these itself (sshd takes the first value it reads, and
# 00- sorts first, ahead of e.g. Ubuntu cloud images' 50-cloud-init.conf with PasswordAuthentication
# yes); otherwise a marked block at the top of sshd_config. Before writing, the whole resulting
# configuration is checked with `sshd -t` and `sshd -T` must show the intended values; after writing
# (on /) `sshd -t` again, then `systemctl reload ssh` (or sshd, or SIGHUP). Replaced files are kept
# as FILE.infracore-bak-TIMESTAMP; on a failed check the originals are put back.
#
# Exit codes: 0 done (or dry run shown, or nothing to change); 1 error or validation failed (nothing
# changed); 3 held back to keep you from being locked out (no usable key: password login left on).
set -euo pipefail
export LC_ALL=C

APPLY=0
ROOT=""
USER_NAME=""
SSHD_BIN="${SSHD:-}"
DROPIN_NAME="00-infracore-hardening.conf"
BEGIN_MARK="# BEGIN infracore hardening (scripts/harden-ssh.sh)"
END_MARK="# END infracore hardening"

die() { echo "harden-ssh: error: $*" >&2; exit 1; }
say() { echo "harden-ssh: $*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --apply) APPLY=1 ;;
        --user) [[ $# -ge 2 ]] || die "--user needs a name"; USER_NAME="$2"; shift ;;
        --user=*) USER_NAME="${1#*=}" ;;
        --root) [[ $# -ge 2 ]] || die "--root needs a directory"; ROOT="$2"; shift ;;
        --root=*) ROOT="${1#*=}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

if [[ -n "$ROOT" ]]; then
    [[ -d "$ROOT" ]] || die "--root $ROOT is not a directory"
    ROOT="$(cd "$ROOT" && pwd)"
    [[ "$ROOT" == "/" ]] && ROOT=""
fi
LIVE=0
[[ -z "$ROOT" ]] && LIVE=1

HOST_MAIN="/etc/ssh/sshd_config"
HOST_DIR="/etc/ssh/sshd_config.d"
HOST_DROPIN="$HOST_DIR/$DROPIN_NAME"
MAIN="$ROOT$HOST_MAIN"
[[ -f "$MAIN" ]] || die "$MAIN does not exist: is openssh-server installed?"

if [[ $APPLY -eq 1 && $LIVE -eq 1 && $EUID -ne 0 ]]; then
    die "--apply on this host needs root (sudo $0 --apply)"
fi

if [[ -z "$USER_NAME" ]]; then
    USER_NAME="${SUDO_USER:-$(id -un)}"
fi
PASSWD_LINE="$(grep -E "^${USER_NAME//./\\.}:" "$ROOT/etc/passwd" || true)"
[[ -n "$PASSWD_LINE" ]] || die "no user '$USER_NAME' in $ROOT/etc/passwd (pass --user NAME: the account you log in with)"
USER_HOME="$(cut -d: -f6 <<<"$PASSWD_LINE")"

if [[ -z "$SSHD_BIN" ]]; then
    SSHD_BIN="$(command -v sshd || true)"
    [[ -z "$SSHD_BIN" && -x /usr/sbin/sshd ]] && SSHD_BIN=/usr/sbin/sshd
fi

# --- the keyword lines of a config file at global scope (before its first Match), lower-cased ---
# prints: "LINE KEYWORD ARGS..." ; Include lines as "LINE include PATTERNS..."; stops at Match.
global_lines() {
    awk '{
        s = $0; sub(/^[ \t]+/, "", s); if (s == "" || substr(s, 1, 1) == "#") next
        kw = s; sub(/[ \t=].*$/, "", kw); rest = substr(s, length(kw) + 1); sub(/^[ \t]*=?[ \t]*/, "", rest)
        kw = tolower(kw); if (kw == "match") exit
        if (kw == "challengeresponseauthentication") kw = "kbdinteractiveauthentication"
        print NR " " kw " " rest
    }' "$1"
}

# --- does NAME have a key sshd will accept? ---
KEY_FILES=()
KEY_PROBLEM=""
authorized_files() {
    local spec="" f
    spec="$(global_lines "$MAIN" | awk '$2 == "authorizedkeysfile" { $1 = ""; $2 = ""; print; exit }')"
    [[ -z "$spec" ]] && spec=".ssh/authorized_keys .ssh/authorized_keys2"
    for f in $spec; do
        [[ "$f" == "none" ]] && continue
        f="${f//%h/$USER_HOME}"; f="${f//%u/$USER_NAME}"; f="${f//%%/%}"
        [[ "$f" == /* ]] || f="$USER_HOME/$f"
        KEY_FILES+=("$f")
    done
}
# writable by group or others (sshd's StrictModes refuses keys then)
loose() { local m; m="$(stat -c %a "$1" 2>/dev/null || echo 0)"; (( (8#$m & 8#022) != 0 )); }
has_key() {
    local f p
    authorized_files
    for f in "${KEY_FILES[@]}"; do
        p="$ROOT$f"
        [[ -f "$p" ]] || continue
        if ! grep -Eq '(^|[[:space:]])(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)[[:space:]]+[A-Za-z0-9+/]{40,}' "$p"; then
            continue
        fi
        if loose "$p" || loose "$(dirname "$p")" || loose "$ROOT$USER_HOME"; then
            KEY_PROBLEM="$f has a key, but it or its directory is writable by others, so sshd (StrictModes) ignores it: chmod go-w $(dirname "$f") $f $USER_HOME"
            continue
        fi
        return 0
    done
    return 1
}

# --- what to set ---
declare -a SETTINGS=()
HELD_BACK=0
if has_key; then
    KEYED=1
else
    KEYED=0
fi
if [[ "$USER_NAME" == "root" ]]; then
    if [[ $KEYED -eq 1 ]]; then
        SETTINGS+=("PermitRootLogin prohibit-password")
    fi
else
    SETTINGS+=("PermitRootLogin no")
fi
if [[ $KEYED -eq 1 ]]; then
    SETTINGS+=("PasswordAuthentication no" "KbdInteractiveAuthentication no")
else
    HELD_BACK=1
    echo "harden-ssh: no authorized key for '$USER_NAME' that sshd would accept (looked in: ${KEY_FILES[*]})." >&2
    [[ -n "$KEY_PROBLEM" ]] && echo "harden-ssh: $KEY_PROBLEM" >&2
    echo "harden-ssh: password login stays on, or you could lock yourself out. Add a key first" \
         "(from your machine: ssh-copy-id $USER_NAME@THIS_HOST), check you can log in with it, then run this again." >&2
fi
if [[ ${#SETTINGS[@]} -eq 0 ]]; then
    echo "harden-ssh: refusing: nothing can be changed safely for '$USER_NAME'." >&2
    exit 3
fi

# --- drop-in or the main file? ---
covers_dropin() {  # does one of the Include patterns ($@) read the drop-in?
    local p
    for p in "$@"; do
        p="${p//\"/}"
        [[ "$p" == /* ]] || p="/etc/ssh/$p"
        # shellcheck disable=SC2053  # $p is a glob pattern on purpose
        [[ "$HOST_DROPIN" == $p ]] && return 0
    done
    return 1
}
sets_ours() { grep -Eq '^(permitrootlogin|passwordauthentication|kbdinteractiveauthentication)$' <<<"$1"; }

MODE="main"
if ! grep -qF "$BEGIN_MARK" "$MAIN"; then
    while read -r lineno kw rest; do
        if [[ "$kw" == "include" ]]; then
            # shellcheck disable=SC2086  # split the patterns
            if covers_dropin $rest; then MODE="dropin"; break; fi
        elif sets_ours "$kw"; then
            say "$HOST_MAIN:$lineno sets ${kw} before any Include of $HOST_DIR: editing $HOST_MAIN itself"
            break
        fi
    done < <(global_lines "$MAIN")
fi
if [[ "$MODE" == "dropin" ]]; then
    # A drop-in sorting before ours that sets the same keywords would win: then edit the main file.
    for f in "$ROOT$HOST_DIR"/*.conf; do
        [[ -f "$f" ]] || continue
        name="$(basename "$f")"
        [[ "$name" < "$DROPIN_NAME" ]] || continue
        if global_lines "$f" | awk '{print $2}' | grep -Eq '^(permitrootlogin|passwordauthentication|kbdinteractiveauthentication)$'; then
            say "$HOST_DIR/$name is read before $DROPIN_NAME and sets the same keywords: editing $HOST_MAIN instead"
            MODE="main"
        fi
    done
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

NEW_BODY="$WORK/body"
{
    echo "# Written by Infra-Core's scripts/harden-ssh.sh for user '$USER_NAME' on $(date -u +%Y-%m-%dT%H:%MZ)."
    echo "# sshd uses the first value it reads for each keyword; this file is read first."
    printf '%s\n' "${SETTINGS[@]}"
} >"$NEW_BODY"

build_candidate() {  # the file to write, as $WORK/new, for the current MODE
    if [[ "$MODE" == "dropin" ]]; then
        TARGET_HOST="$HOST_DROPIN"
        cp "$NEW_BODY" "$WORK/new"
    else
        TARGET_HOST="$HOST_MAIN"
        { echo "$BEGIN_MARK"; cat "$NEW_BODY"; echo "$END_MARK"
          awk -v b="$BEGIN_MARK" -v e="$END_MARK" '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' "$MAIN"
        } >"$WORK/new"
    fi
    TARGET="$ROOT$TARGET_HOST"
}

# --- validating the whole resulting configuration before touching anything ---
# A staged copy: the main file and the drop-in directory as they would be, with Include paths pointed
# at the copies (and, under --root, into the tree).
stage() {
    local d="$WORK/stage" f
    rm -rf "$d"
    mkdir -p "$d/conf.d"
    if [[ -d "$ROOT$HOST_DIR" ]]; then
        for f in "$ROOT$HOST_DIR"/*; do [[ -f "$f" ]] && cp -L "$f" "$d/conf.d/"; done
    fi
    local main_src="$WORK/new"
    if [[ "$MODE" == "dropin" ]]; then
        cp "$WORK/new" "$d/conf.d/$DROPIN_NAME"
        main_src="$MAIN"
    fi
    rewrite "$main_src" "$d/sshd_config"
    for f in "$d"/conf.d/*; do
        [[ -f "$f" ]] || continue
        rewrite "$f" "$f.tmp" && mv "$f.tmp" "$f"
    done
    echo "$d/sshd_config"
}
rewrite() {
    awk -v root="$ROOT" -v dir="$HOST_DIR" -v staged="$WORK/stage/conf.d" '{
        s = $0; sub(/^[ \t]+/, "", s); kw = s; sub(/[ \t=].*$/, "", kw)
        if (tolower(kw) != "include") { print; next }
        rest = substr(s, length(kw) + 1); sub(/^[ \t]*=?[ \t]*/, "", rest)
        n = split(rest, pats, /[ \t]+/); out = "Include"
        for (i = 1; i <= n; i++) {
            p = pats[i]; gsub(/"/, "", p); if (p == "") continue; if (substr(p, 1, 1) == "#") break
            if (substr(p, 1, 1) != "/") p = "/etc/ssh/" p
            if (index(p, dir "/") == 1) p = staged substr(p, length(dir) + 1); else p = root p
            out = out " " p
        }
        print out
    }' "$1" >"$2"
}
# 0: valid and effective; 1: sshd -t rejects it (message in VALIDATION); 2: valid, but sshd would not
# use our values (something read earlier wins; message in VALIDATION)
validate() {
    local staged err effective s want got
    staged="$(stage)"
    if ! err="$("$SSHD_BIN" -t -f "$staged" 2>&1)"; then
        VALIDATION="sshd -t rejects the resulting configuration:"$'\n'"$err"
        [[ "$err" == *"privilege separation directory"* ]] && \
            VALIDATION+=$'\n'"(create it with: mkdir -p -m 0755 /run/sshd — systemd does when ssh.service runs)"
        return 1
    fi
    effective="$("$SSHD_BIN" -T -f "$staged" 2>/dev/null || true)"
    effective="${effective//permitrootlogin without-password/permitrootlogin prohibit-password}"  # sshd -T's old name
    for s in "${SETTINGS[@]}"; do
        want="$(tr '[:upper:]' '[:lower:]' <<<"$s")"
        if ! grep -qxF "$want" <<<"$effective"; then
            got="$(grep -E "^${want%% *} " <<<"$effective" || echo "(nothing)")"
            VALIDATION="after the change sshd would still use '$got', not '$want'"
            return 2
        fi
    done
    VALIDATION="sshd -t accepts the result, and sshd -T shows: ${SETTINGS[*]}"
    return 0
}

build_candidate
VALID=0
VALIDATION="sshd not found: cannot validate the change (set SSHD=/path/to/sshd)"
if [[ -n "$SSHD_BIN" ]]; then
    validate && VALID=1 || VALID=$((-$?))
    if [[ $VALID -eq -2 && "$MODE" == "dropin" ]]; then
        say "$VALIDATION with the drop-in (a file read earlier wins): editing $HOST_MAIN instead"
        MODE="main"
        build_candidate
        validate && VALID=1 || VALID=$((-$?))
    fi
fi

# Unchanged apart from the timestamp comment: nothing to do.
strip_stamp() { grep -v '^# Written by Infra-Core' "$1" 2>/dev/null || true; }
if [[ -f "$TARGET" ]] && [[ "$(strip_stamp "$TARGET")" == "$(strip_stamp "$WORK/new")" ]]; then
    say "already in place in $TARGET_HOST: nothing to change"
    exit $(( HELD_BACK ? 3 : 0 ))
fi

echo "harden-ssh: the change to $TARGET_HOST (for user '$USER_NAME'):"
OLD="$TARGET"
[[ -f "$OLD" ]] || OLD=/dev/null
diff -u --label "$TARGET_HOST (now)" --label "$TARGET_HOST (new)" "$OLD" "$WORK/new" || true

if [[ $VALID -eq 1 ]]; then
    say "$VALIDATION"
elif [[ $VALID -lt 0 ]]; then
    while IFS= read -r line; do echo "harden-ssh: $line" >&2; done <<<"$VALIDATION"
    echo "harden-ssh: nothing changed." >&2
    exit 1
else
    echo "harden-ssh: $VALIDATION" >&2
fi

if [[ $APPLY -eq 0 ]]; then
    say "dry run: nothing changed. Run again with --apply to write it."
    exit $(( HELD_BACK ? 3 : 0 ))
fi
[[ $VALID -eq 1 ]] || die "refusing to apply a change sshd has not validated"

# --- apply ---
STAMP="$(date -u +%Y%m%d%H%M%S)"
BACKUP=""
if [[ -f "$TARGET" ]]; then
    BACKUP="$TARGET.infracore-bak-$STAMP"
    cp -p "$TARGET" "$BACKUP"
    say "backed up $TARGET_HOST to $BACKUP"
fi
mkdir -p "$(dirname "$TARGET")"
cp "$WORK/new" "$TARGET.infracore-tmp"
chmod 0644 "$TARGET.infracore-tmp"
mv -f "$TARGET.infracore-tmp" "$TARGET"
say "wrote $TARGET"

restore() {
    if [[ -n "$BACKUP" ]]; then mv -f "$BACKUP" "$TARGET"; else rm -f "$TARGET"; fi
    echo "harden-ssh: restored $TARGET_HOST; nothing changed." >&2
}

if [[ $LIVE -eq 1 ]]; then
    if ! ERR="$("$SSHD_BIN" -t 2>&1)"; then
        echo "harden-ssh: sshd -t rejects the written configuration: $ERR" >&2
        restore
        exit 1
    fi
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
        systemctl reload ssh
    elif command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet sshd 2>/dev/null; then
        systemctl reload sshd
    elif [[ -f /run/sshd.pid ]] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; then
        kill -HUP "$(cat /run/sshd.pid)"
    else
        say "sshd is not running: the settings apply when it starts"
    fi
    say "reloaded sshd. Keep this session open and check a new login in another terminal before closing it."
else
    say "--root: not reloading sshd"
fi
exit $(( HELD_BACK ? 3 : 0 ))
