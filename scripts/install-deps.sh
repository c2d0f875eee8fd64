#!/usr/bin/env bash
# Installs what drover needs on a fresh Debian machine of this kind: the OCI runtimes,
# busybox-static (the built-in image), rsync, LXD's own clients for the compatibility tests
# (lxd-client for `lxc` 5.0.2, pylxd from PyPI). Idempotent; quiet when all is there.
set -euo pipefail

pkgs=(crun runc busybox-static lxd-client rsync iproute2 util-linux python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import pylxd' 2>/dev/null; then
  echo "installing: pylxd (PyPI)" >&2
  python3 -m pip install -q --disable-pip-version-check pylxd >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages pylxd
fi
