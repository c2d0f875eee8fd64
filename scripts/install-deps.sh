#!/usr/bin/env bash
# Installs what drover needs on a fresh Debian machine of this kind: the OCI runtimes,
# busybox-static (the built-in image), rsync, LXD's own clients for the compatibility tests
# (lxd-client for `lxc` 5.0.2, pylxd from PyPI), QEMU 7.2 for virtual machines and what the
# VM image build needs (e2fsprogs), and gcc (cargo links with it; a VM test builds a small
# guest program with it). Idempotent; quiet when all is there.
set -euo pipefail

pkgs=(crun runc busybox-static lxd-client rsync iproute2 util-linux python3 e2fsprogs gcc)
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

# QEMU: Debian's qemu-system-x86 is 7.2, but this image may carry a newer qemu-utils from
# backports that qemu-system-x86 cannot install next to: pin qemu-utils and
# qemu-system-common to qemu-system-x86's own version (downgrading qemu-utils if needed).
if ! command -v qemu-system-x86_64 >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  qv=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  if [[ -z "$qv" || "$qv" == "(none)" ]]; then
    apt-get update -q >/dev/null
    qv=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  fi
  echo "installing: qemu-system-x86=$qv" >&2
  apt-get install -y -q --no-install-recommends --allow-downgrades "qemu-system-x86=$qv" \
    "qemu-system-common=$qv" "qemu-utils=$qv" >/dev/null
fi

# The VM image's kernel: Debian's linux-image-amd64, downloaded (not installed) into the
# cache images/busybox-vm/build.sh reads.
deb_cache=${DEB_CACHE:-/var/cache/drover/debs}
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -n "$kpkg" ]] && ! compgen -G "$deb_cache/${kpkg}_*.deb" >/dev/null; then
  echo "downloading: $kpkg (VM image kernel)" >&2
  mkdir -p "$deb_cache"
  (cd "$deb_cache" && apt-get download -q "$kpkg" >/dev/null 2>&1)
fi

if ! python3 -c 'import pylxd' 2>/dev/null; then
  echo "installing: pylxd (PyPI)" >&2
  python3 -m pip install -q --disable-pip-version-check pylxd >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages pylxd
fi
