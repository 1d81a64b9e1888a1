# Shared by the ops/ scripts (sourced, not run).
#
# Caches live outside the clone so a fresh clone (and CI) reuses them:
#   COUPONS_CACHE     default ~/.cache/coupons
#   CARGO_TARGET_DIR  default $COUPONS_CACHE/target
#   the tansu broker  $COUPONS_CACHE/tansu/bin/tansu

COUPONS_CACHE=${COUPONS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coupons}
export COUPONS_CACHE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$COUPONS_CACHE/target}
TANSU_VERSION=${TANSU_VERSION:-0.6.0}
TANSU_BIN=$COUPONS_CACHE/tansu/bin/tansu
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$COUPONS_CACHE"

say() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*"; }
die() { printf '\033[1;31m[%s] error:\033[0m %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# host and port of a URL such as mysql://root@127.0.0.1:3306/coupons or a
# bare host:port; prints "host port".
host_port() {
  local rest=${1#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  rest=${rest%%,*}
  local host=${rest%:*} port=${rest##*:}
  [ "$host" = "$rest" ] && port=$2
  echo "$host $port"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_port NAME HOST PORT SECONDS
wait_port() {
  local deadline=$((SECONDS + $4))
  until port_open "$2" "$3"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

is_local() { case "$1" in 127.*|localhost|::1|"[::1]") return 0;; *) return 1;; esac; }

apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get on this machine"
  if [ ! -f "$COUPONS_CACHE/.apt-updated" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    touch "$COUPONS_CACHE/.apt-updated"
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}
