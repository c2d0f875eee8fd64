#!/usr/bin/env bash
# drover's main job on its embedded defaults: install what is missing, build, bring up a local
# 3-member cluster (m1, m2, m3 on 127.0.0.11-13:8443, state under .drover-demo/ in the
# checkout, or $DROVER_DEMO_DIR), import the built-in busybox image, launch containers spread
# over the members, then evacuate m2 with live progress, show where everything went, restore
# m2 and show it again. The members keep running afterwards; the last lines say how to use
# and stop them. Running it again reuses the cluster.
set -euo pipefail
# Root is needed (packages, containers, mounts): re-run through sudo when not root.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -E "$0" "$@"
  fi
  echo "$(basename "$0"): run it as root (it installs packages and runs containers)" >&2
  exit 1
fi
cd "$(dirname "$0")/.."

root=${DROVER_DEMO_DIR:-$PWD/.drover-demo}
members=(m1 m2 m3)
declare -A address=([m1]=127.0.0.11:8443 [m2]=127.0.0.12:8443 [m3]=127.0.0.13:8443)

scripts/install-deps.sh
echo "--- build (release)" >&2
cargo build --release --locked --bins
bin=$PWD/target/release
export PATH=$bin:$PATH

on() { # on MEMBER CMD...: run a drover command against MEMBER's socket
  local m=$1
  shift
  DROVER_DIR=$root/$m "$@"
}

start_member() {
  local m=$1 dir=$root/$1
  mkdir -p "$dir"
  if on "$m" drover list >/dev/null 2>&1; then
    return
  fi
  echo "--- start droverd $m (DROVER_DIR=$dir, log $dir/droverd.log)" >&2
  DROVER_DIR=$dir nohup droverd >>"$dir/droverd.log" 2>&1 &
  echo $! >"$dir/droverd.pid"
  for _ in $(seq 1 150); do
    on "$m" drover list >/dev/null 2>&1 && return
    kill -0 "$(cat "$dir/droverd.pid")" 2>/dev/null || { tail -20 "$dir/droverd.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "droverd $m did not answer; see $dir/droverd.log" >&2
  exit 1
}

clustered() { # clustered MEMBER: whether MEMBER is part of the cluster already
  on "$1" drover cluster list -f csv 2>/dev/null | grep -q "^$1,"
}

for m in "${members[@]}"; do
  start_member "$m"
done

if ! clustered m1; then
  echo "--- form the cluster: enable on m1" >&2
  on m1 drover config set core.https_address "${address[m1]}"
  on m1 drover cluster enable m1
fi
for m in m2 m3; do
  if ! clustered "$m"; then
    echo "--- $m joins with a token from m1" >&2
    token=$(on m1 drover cluster add "$m" | tail -1)
    on "$m" drover cluster join "$token" --address "${address[$m]}" --name "$m"
  fi
done

if ! on m1 drover image alias list -f csv 2>/dev/null | grep -q '^busybox,'; then
  echo "--- build and import the busybox image (on m1; the others fetch it when they need it)" >&2
  images/busybox/build.sh "$root/busybox.tar.gz"
  on m1 drover image import "$root/busybox.tar.gz" --alias busybox
fi

# c1-c3 land where the scheduler puts them (least loaded first); c4 goes to m2 on purpose,
# stopped, so that the evacuation below has running and stopped instances to move.
existing=$(on m1 drover list -f csv | cut -d, -f1)
for c in c1 c2 c3; do
  grep -qx "$c" <<<"$existing" || { echo "--- launch $c" >&2; on m1 drover launch busybox "$c"; }
done
grep -qx c4 <<<"$existing" || { echo "--- create c4 on m2 (stopped)" >&2; on m1 drover init busybox c4 --target m2; }
grep -qx c5 <<<"$existing" || { echo "--- launch c5 on m2" >&2; on m1 drover launch busybox c5 --target m2; }

echo "--- the cluster" >&2
on m1 drover cluster list
on m1 drover list

echo "--- evacuate m2 (every instance on it moves to m1 or m3; live progress)" >&2
on m1 drover cluster evacuate m2 --yes
on m1 drover cluster list
on m1 drover list

echo "--- restore m2 (the instances come home)" >&2
on m1 drover cluster restore m2 --yes
on m1 drover cluster list
on m1 drover list

cat >&2 <<MSG
--- the 3 members keep running (state and logs under $root/m1, m2, m3). Use them with:
      export PATH=$bin:\$PATH DROVER_DIR=$root/m1     # any member answers for the whole cluster
      drover list; drover cluster list; drover cluster evacuate m3
    or with LXD's client: LXD_DIR=$root/m1 lxc list
    Stop them with: kill \$(cat $root/m*/droverd.pid)   (instances keep running; the next start re-attaches)
MSG
