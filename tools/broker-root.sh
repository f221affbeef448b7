#!/usr/bin/env bash
# Builds a broker root: a Debian 13 (trixie) system in a folder of the project's cache, with
# RabbitMQ 4.0, Redis 8.0 and redis-tools inside, for clusters whose section says
# `broker_root = "debian13"` (see docs/broker-roots.md).
#
#   tools/broker-root.sh build debian13     build it once; a second call is a no-op
#   tools/broker-root.sh path debian13      print where it is (built or not)
#
# The root is built in <name>.partial and renamed to <name> only once everything succeeded, with
# a marker file (.brokerbench-root) listing the package versions: a half-built root is never
# used, and the next call starts it over. Builds of the same root wait for each other (flock).
# Nothing is mounted in this machine's mount namespace: apt-get runs in a private one that ends
# with it. The cache folder is $BROKERBENCH_ROOTS, default <repo>/.cache/roots.
set -euo pipefail

MIRROR="${BROKERBENCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=(rabbitmq-server redis-server redis-tools)
MARKER=.brokerbench-root

repo="$(cd "$(dirname "$0")/.." && pwd)"
roots="${BROKERBENCH_ROOTS:-$repo/.cache/roots}"

die() {
  echo "broker-root: error: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 build|path debian13" >&2
  exit 2
}

[ $# -eq 2 ] || usage
action="$1"
name="$2"
case "$name" in
  debian13) suite=trixie ;;
  *) die "unknown broker root '$name'; the project builds: debian13" ;;
esac
dir="$roots/$name"
case "$action" in
  path)
    echo "$dir"
    exit 0
    ;;
  build) ;;
  *) usage ;;
esac

[ "$(id -u)" -eq 0 ] || die "building a root needs root (debootstrap and chroot); run it as root"
command -v debootstrap >/dev/null 2>&1 ||
  die "debootstrap is missing; install it with: apt-get install -y debootstrap"
command -v unshare >/dev/null 2>&1 || die "unshare is missing; install util-linux"

mkdir -p "$roots"
exec 9>"$roots/$name.lock"
if ! flock -n 9; then
  echo "broker-root: another build of $name is running; waiting for it"
  flock 9
fi

if [ -f "$dir/$MARKER" ]; then
  echo "broker-root: $name is already built in $dir ($(paste -sd ',' "$dir/$MARKER" | sed 's/,/, /g')); nothing to do"
  exit 0
fi

# Mounts under a folder about to be removed would take the host's files with it: refuse.
mounted_under() {
  awk -v p="$1/" '{ if (index($5 "/", p) == 1) print $5 }' /proc/self/mountinfo
}
for d in "$dir" "$dir.partial"; do
  if [ -n "$(mounted_under "$d")" ]; then
    die "something is mounted under $d ($(mounted_under "$d" | tr '\n' ' ')); stop what uses it, unmount it, and run this again"
  fi
done
if [ -e "$dir" ]; then
  echo "broker-root: $dir has no $MARKER (a build that did not finish); removing it"
  rm -rf --one-file-system "$dir"
fi
partial="$dir.partial"
if [ -e "$partial" ]; then
  echo "broker-root: removing the unfinished build in $partial"
  rm -rf --one-file-system "$partial"
fi

start=$(date +%s)
log="$roots/$name.build.log"
: >"$log"
step() {
  local what="$1"
  shift
  local t0
  t0=$(date +%s)
  echo "broker-root: $what"
  if ! "$@" >>"$log" 2>&1; then
    echo "broker-root: error: $what failed; last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  echo "broker-root:   done in $(($(date +%s) - t0)) s"
}

step "debootstrap --variant=minbase $suite $partial $MIRROR" \
  debootstrap --variant=minbase "$suite" "$partial" "$MIRROR"

# No service may start inside the root while packages are installed.
printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
chmod 755 "$partial/usr/sbin/policy-rc.d"
# Erlang node names are <name>@localhost: the root must resolve localhost itself.
if ! grep -qs '^127\.0\.0\.1[[:space:]].*localhost' "$partial/etc/hosts"; then
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >>"$partial/etc/hosts"
fi

in_root() {
  # A private mount namespace: /proc is mounted for apt-get and vanishes with it.
  unshare --mount --propagation private sh -c \
    'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$partial" "$@"
}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
step "apt-get update (in the root)" in_root apt-get update -q
step "apt-get install --no-install-recommends ${PACKAGES[*]} (in the root)" \
  in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
step "apt-get clean (in the root)" in_root apt-get clean

for bin in /usr/lib/rabbitmq/bin/rabbitmq-server /usr/lib/rabbitmq/bin/rabbitmqctl \
  /usr/bin/redis-server /usr/bin/redis-cli /usr/bin/erl; do
  in_root test -x "$bin" || die "$bin is missing in $partial after the install; see $log"
done
in_root dpkg-query -W -f '${Package} ${Version}\n' rabbitmq-server erlang-base redis-server \
  redis-tools >"$partial/$MARKER"
mv "$partial" "$dir"
size=$(du -sh --one-file-system "$dir" | cut -f1)
echo "broker-root: built $name in $dir in $(($(date +%s) - start)) s ($size): $(paste -sd ',' "$dir/$MARKER" | sed 's/,/, /g')"
