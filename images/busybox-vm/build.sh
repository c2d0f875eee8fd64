#!/bin/sh
# Build drover's built-in busybox VM image, offline, from Debian packages.
#
#   build.sh OUTDIR
#   build.sh --unified OUT.tar.gz
#
# OUTDIR gets, in LXD's split image format for virtual machines:
#   OUTDIR/metadata.tar.gz   metadata.yaml, templates/, and boot/vmlinuz + boot/initrd.img
#                            (the guest kernel is booted directly by QEMU with -kernel/-initrd,
#                            so it travels with the metadata instead of inside the disk)
#   OUTDIR/rootfs.img        the root disk: a raw ext4 filesystem (no partition table)
#
# --unified writes one LXD unified tarball for drover's image store instead: metadata.yaml
# (properties.type: virtual-machine) and rootfs/ holding root.img, boot/vmlinuz and
# boot/initrd.img, which is what an instance volume of a VM holds (driver-qemu reads them
# there). Alias it `busybox-vm`.
#
# The kernel is Debian's linux-image-amd64, fetched with `apt-get download` (from the configured
# Debian mirror, nothing else) into $DEB_CACHE (default /var/cache/drover/debs), or taken from
# $KERNEL_DEB when set. busybox is Debian's busybox-static ($BUSYBOX, default /bin/busybox).
#
# Boot: the initramfs /init mounts proc/sys/devtmpfs, loads virtio + ext4 + button/evdev from
# the Debian kernel, mounts the root disk (/dev/vda, `root=` on the command line) and
# switch_roots into its /sbin/init, which starts the exec agent on the virtio-serial port
# `org.drover.agent`, a shell on the serial console, and a watcher that powers off cleanly on
# the ACPI power button (QMP system_powerdown). With `drover.probe` on the kernel command line
# the initramfs prints DROVER-USERSPACE-READY and powers off at once (the accelerator probe).
set -eu

usage() {
	echo "usage: $0 OUTDIR | $0 --unified OUT.tar.gz" >&2
	exit 2
}
unified=
case "${1:-}" in
--unified)
	[ $# -eq 2 ] || usage
	unified=$2
	;;
"" | -*) usage ;;
*)
	[ $# -eq 1 ] || usage
	out=$1
	;;
esac

BUSYBOX=${BUSYBOX:-/bin/busybox}
DEB_CACHE=${DEB_CACHE:-/var/cache/drover/debs}
DISK_MB=${DISK_MB:-64}
[ -x "$BUSYBOX" ] || {
	echo "$0: $BUSYBOX not found (install busybox-static)" >&2
	exit 1
}
command -v mke2fs >/dev/null || {
	echo "$0: mke2fs not found (install e2fsprogs)" >&2
	exit 1
}

created=${SOURCE_DATE_EPOCH:-$(date +%s)}
work=$(mktemp -d "${TMPDIR:-/tmp}/drover-busybox-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# ---------------------------------------------------------------- kernel
if [ -z "${KERNEL_DEB:-}" ]; then
	mkdir -p "$DEB_CACHE"
	# linux-image-amd64 is a meta package: its Depends names the real image package.
	real=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	[ -n "$real" ] || {
		echo "$0: apt knows no linux-image-amd64 (run apt-get update)" >&2
		exit 1
	}
	KERNEL_DEB=$(ls "$DEB_CACHE/${real}"_*.deb 2>/dev/null | head -n 1 || true)
	if [ -z "$KERNEL_DEB" ]; then
		(cd "$DEB_CACHE" && apt-get download -q "$real" >/dev/null 2>&1) || {
			echo "$0: apt-get download $real failed" >&2
			exit 1
		}
		KERNEL_DEB=$(ls "$DEB_CACHE/${real}"_*.deb | head -n 1)
	fi
fi
mkdir -p "$work/kernel"
dpkg-deb -x "$KERNEL_DEB" "$work/kernel"
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* | head -n 1)
kver=${vmlinuz##*/vmlinuz-}
moddir=$work/kernel/lib/modules/$kver/kernel
[ -d "$moddir" ] || {
	echo "$0: no modules for $kver in $KERNEL_DEB" >&2
	exit 1
}

# modpath NAME: the .ko of a module (names use _ or - interchangeably).
modpath() {
	n=$(echo "$1" | tr - _)
	f=$(find "$moddir" -name "$n.ko" | head -n 1)
	[ -n "$f" ] || f=$(find "$moddir" -name "$(echo "$n" | tr _ -).ko" | head -n 1)
	[ -n "$f" ] || {
		echo "$0: module $1 not in $kver" >&2
		exit 1
	}
	echo "$f"
}
# add NAME: append NAME's dependencies (from its modinfo `depends=`), then NAME, to the load
# order, each once.
order=
add() {
	case " $order " in *" $1 "*) return 0 ;; esac
	f=$(modpath "$1")
	deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n 1 | tr , ' ')
	for d in $deps; do add "$d"; done
	case " $order " in *" $1 "*) return 0 ;; esac
	order="$order $1"
}
# crc32c_generic: jbd2/ext4 ask the crypto API for crc32c (a softdep, not in depends=).
for m in crc32c_generic virtio_pci virtio_blk virtio_console ext4 button evdev; do add "$m"; done

# ---------------------------------------------------------------- initramfs
I=$work/initramfs
mkdir -p "$I/bin" "$I/sbin" "$I/dev" "$I/proc" "$I/sys" "$I/newroot" "$I/lib/modules"
cp "$BUSYBOX" "$I/bin/busybox"
for a in sh mount umount insmod switch_root sleep cat echo mkdir poweroff cut grep sed uname; do
	ln -s busybox "$I/bin/$a"
done
for m in $order; do cp "$(modpath "$m")" "$I/lib/modules/$m.ko"; done
echo "$order" >"$I/lib/modules/order"

cat >"$I/init" <<'INIT'
#!/bin/sh
# drover busybox-vm initramfs: load the few modules, mount the root disk, switch to it.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
cmdline=$(cat /proc/cmdline)
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" 2>/dev/null; done
for w in $cmdline; do
	case $w in
	drover.probe)
		echo "DROVER-USERSPACE-READY uptime=$(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS0
		poweroff -f
		;;
	esac
done
root=/dev/vda
for w in $cmdline; do case $w in root=/dev/*) root=${w#root=} ;; esac; done
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
if ! mount -t ext4 -o rw "$root" /newroot; then
	echo "drover-vm: cannot mount the root disk $root" >/dev/ttyS0
	poweroff -f
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
INIT
chmod 0755 "$I/init"
(cd "$I" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) | gzip -n -9 >"$work/initrd.img"

# ---------------------------------------------------------------- root disk
R=$work/rootfs
mkdir -p "$R/bin" "$R/sbin" "$R/usr/bin" "$R/usr/sbin" "$R/etc" "$R/dev" "$R/proc" \
	"$R/sys" "$R/tmp" "$R/run" "$R/root" "$R/var/log"
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
cp "$BUSYBOX" "$R/bin/busybox"
chmod 0755 "$R/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
	case "$applet" in bin/busybox | sbin/init) continue ;; esac
	mkdir -p "$R/$(dirname "$applet")"
	[ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done
cp "$(dirname "$0")/init" "$R/sbin/init"
cp "$(dirname "$0")/agent" "$R/sbin/drover-agent"
chmod 0755 "$R/sbin/init" "$R/sbin/drover-agent"
cat >"$R/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
echo busybox-vm >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 busybox-vm\n' >"$R/etc/hosts"

disk=$work/rootfs.img
rm -f "$disk"
# orphan_file is newer than the 6.1 guest kernel (it would mount read-only).
E2FSPROGS_FAKE_TIME=$created mke2fs -q -F -t ext4 -O ^orphan_file,^metadata_csum_seed \
	-L rootfs -U clear -E root_owner=0:0,hash_seed=00000000-0000-0000-0000-000000000000 \
	-d "$R" "$disk" "${DISK_MB}M" >/dev/null 2>&1 ||
	mke2fs -q -F -t ext4 -O ^orphan_file -L rootfs -E root_owner=0:0 -d "$R" "$disk" "${DISK_MB}M" >/dev/null

# ---------------------------------------------------------------- metadata
M=$work/meta
mkdir -p "$M/templates" "$M/boot"
cp "$vmlinuz" "$M/boot/vmlinuz"
cp "$work/initrd.img" "$M/boot/initrd.img"
echo '{{ container.name }}' >"$M/templates/hostname.tpl"
cat >"$M/metadata.yaml" <<META
architecture: x86_64
creation_date: $created
properties:
  architecture: x86_64
  description: drover busybox VM (Debian $kver kernel, busybox-static)
  name: busybox-vm
  os: busybox
  release: "$kver"
  type: virtual-machine
  kernel: boot/vmlinuz
  initrd: boot/initrd.img
  root_device: /dev/vda
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
META
chmod -R u=rwX,go=rX "$M"

if [ -n "$unified" ]; then
	U=$work/unified
	mkdir -p "$U/rootfs/boot"
	sed '/^templates:/,$d' "$M/metadata.yaml" >"$U/metadata.yaml"
	cp "$M/boot/vmlinuz" "$M/boot/initrd.img" "$U/rootfs/boot/"
	cp --sparse=always "$disk" "$U/rootfs/root.img"
	chmod -R u=rwX,go=rX "$U"
	tar -C "$U" --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$created" \
		--format=gnu --sparse -cf - metadata.yaml rootfs | gzip -n -9 >"$unified.tmp"
	mv "$unified.tmp" "$unified"
	exit 0
fi

mkdir -p "$out"
tar -C "$M" --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$created" \
	--format=gnu -cf - metadata.yaml templates boot | gzip -n -9 >"$out/metadata.tar.gz.tmp"
mv "$out/metadata.tar.gz.tmp" "$out/metadata.tar.gz"
cp --sparse=always "$disk" "$out/rootfs.img.tmp"
mv "$out/rootfs.img.tmp" "$out/rootfs.img"
