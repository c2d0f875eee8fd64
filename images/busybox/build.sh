#!/bin/sh
# Build drover's built-in busybox container image in LXD's image format.
#
#   build.sh OUT.tar.gz                       unified image: metadata.yaml, templates/, rootfs/
#   build.sh --split META.tar.gz ROOTFS.tar.gz split image: metadata tarball + rootfs tarball
#
# The rootfs holds Debian's busybox-static ($BUSYBOX, default /bin/busybox), one symlink per
# applet, a minimal /etc and a tiny /sbin/init shell script that stops in milliseconds on
# SIGPWR/SIGTERM/SIGINT/SIGUSR1/SIGUSR2 (busybox's own init takes seconds, so it is not used).
# The output is reproducible for a given busybox binary and SOURCE_DATE_EPOCH: entries are
# sorted, owned by 0:0 (numeric) and stamped with the creation date.
set -eu

usage() {
	echo "usage: $0 OUT.tar.gz | $0 --split META.tar.gz ROOTFS.tar.gz" >&2
	exit 2
}

split=0
case "${1:-}" in
--split)
	[ $# -eq 3 ] || usage
	split=1
	meta_out=$2
	rootfs_out=$3
	;;
"" | -*) usage ;;
*)
	[ $# -eq 1 ] || usage
	out=$1
	;;
esac

BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || {
	echo "$0: $BUSYBOX not found (install busybox-static)" >&2
	exit 1
}

created=${SOURCE_DATE_EPOCH:-$(date +%s)}
version=$("$BUSYBOX" 2>/dev/null | head -n 1 | awk '{print $2}')
[ -n "$version" ] || version=unknown

work=$(mktemp -d "${TMPDIR:-/tmp}/drover-busybox.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
R=$work/rootfs

# ---------------------------------------------------------------- rootfs
mkdir -p "$R/bin" "$R/sbin" "$R/usr/bin" "$R/usr/sbin" "$R/etc" "$R/dev" "$R/proc" \
	"$R/sys" "$R/tmp" "$R/run" "$R/root" "$R/var/log"
chmod 0755 "$R" "$R/bin" "$R/sbin" "$R/usr" "$R/usr/bin" "$R/usr/sbin" "$R/etc" "$R/dev" \
	"$R/proc" "$R/sys" "$R/run" "$R/var" "$R/var/log"
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"

cp "$BUSYBOX" "$R/bin/busybox"
chmod 0755 "$R/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
	case "$applet" in
	bin/busybox | sbin/init) continue ;;
	esac
	mkdir -p "$R/$(dirname "$applet")"
	[ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done

cat >"$R/sbin/init" <<'INIT'
#!/bin/sh
# drover busybox init. Container managers stop a container by signalling PID 1 (LXD and
# drover send SIGPWR). On any stop signal this kills its children and exits 0 at once.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
stop() {
	if [ "$$" = 1 ]; then
		kill -TERM -1 2>/dev/null
	else
		for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
	fi
	exit 0
}
trap stop PWR TERM INT USR1 USR2
# Only as PID 1 (inside the container's namespaces): never rename a host by accident.
if [ "$$" = 1 ]; then
	hostname "$(cat /etc/hostname 2>/dev/null || echo busybox)" 2>/dev/null
fi
while :; do
	sleep 86400 &
	wait $!
done
INIT
chmod 0755 "$R/sbin/init"

cat >"$R/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$R/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo busybox >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 busybox\n' >"$R/etc/hosts"
chmod 0644 "$R/etc/passwd" "$R/etc/group" "$R/etc/hostname" "$R/etc/hosts"

# ---------------------------------------------------------------- metadata
mkdir -p "$work/templates"
echo '{{ container.name }}' >"$work/templates/hostname.tpl"
printf '127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n' >"$work/templates/hosts.tpl"
cat >"$work/metadata.yaml" <<META
architecture: x86_64
creation_date: $created
properties:
  architecture: x86_64
  description: drover busybox (Debian busybox-static)
  name: busybox
  os: busybox
  release: "$version"
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
META
chmod 0755 "$work/templates"
chmod 0644 "$work/metadata.yaml" "$work/templates/hostname.tpl" "$work/templates/hosts.tpl"

# ---------------------------------------------------------------- tarballs
# pack DIR OUT MEMBER...: a sorted, 0:0-owned, gzip'd tarball with a fixed mtime.
pack() {
	dir=$1
	dest=$2
	shift 2
	tar -C "$dir" --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$created" \
		--format=gnu -cf - "$@" | gzip -n -9 >"$dest.tmp"
	mv "$dest.tmp" "$dest"
}

if [ "$split" = 1 ]; then
	pack "$work" "$meta_out" metadata.yaml templates
	pack "$R" "$rootfs_out" .
else
	pack "$work" "$out" metadata.yaml templates rootfs
fi
