#!/usr/bin/env bash
# drover's main job on its embedded defaults: install what is missing, build, start a member
# (DROVER_DIR, default /var/lib/drover), import the built-in busybox image, launch a
# container and list it. The member keeps running afterwards; stop it with
# `kill $(cat $DROVER_DIR/droverd.pid)` (instances keep running; the next start re-attaches).
set -euo pipefail
cd "$(dirname "$0")/.."

export DROVER_DIR=${DROVER_DIR:-/var/lib/drover}
scripts/install-deps.sh
echo "--- build (release)" >&2
cargo build --release --locked --bins
bin=$PWD/target/release
export PATH=$bin:$PATH

mkdir -p "$DROVER_DIR"
if ! drover list >/dev/null 2>&1; then
  echo "--- start droverd (DROVER_DIR=$DROVER_DIR, log $DROVER_DIR/droverd.log)" >&2
  nohup droverd >>"$DROVER_DIR/droverd.log" 2>&1 &
  echo $! >"$DROVER_DIR/droverd.pid"
  for _ in $(seq 1 100); do
    drover list >/dev/null 2>&1 && break
    kill -0 "$(cat "$DROVER_DIR/droverd.pid")" 2>/dev/null || { cat "$DROVER_DIR/droverd.log" >&2; exit 1; }
    sleep 0.1
  done
fi

if ! drover image alias list -f csv 2>/dev/null | grep -q '^busybox,'; then
  echo "--- build and import the busybox image" >&2
  images/busybox/build.sh "$DROVER_DIR/busybox.tar.gz"
  drover image import "$DROVER_DIR/busybox.tar.gz" --alias busybox
fi

name=${1:-c1}
state=$(drover list -f csv | awk -F, -v n="$name" '$1 == n {print $2}')
case "$state" in
  "") echo "--- launch $name" >&2; drover launch busybox "$name" ;;
  RUNNING) ;;
  *) echo "--- start $name" >&2; drover start "$name" ;;
esac
drover exec "$name" -- cat /etc/hostname
drover list
cat >&2 <<MSG
--- droverd keeps running (log: $DROVER_DIR/droverd.log). Use it with:
      export DROVER_DIR=$DROVER_DIR PATH=$bin:\$PATH
      drover list
    Stop it with: kill \$(cat $DROVER_DIR/droverd.pid)   (instances keep running; the next start re-attaches)
MSG
