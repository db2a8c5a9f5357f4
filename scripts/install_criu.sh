#!/usr/bin/env bash
# Installs CRIU >= 4.1 as /usr/local/sbin/criu where the distribution's package is missing or too
# old (Debian 12 ships 3.17, which fails on kernels >= 6.13: "Unexpected rt vDSO area bounds").
# It builds 4.1.x from Debian trixie's source package, fetched through this host's own apt mirror
# with a private apt directory (the host's sources are not touched). Needs root and apt.
# Usage: scripts/install_criu.sh [WORK_DIR]   (exits 0 with a note when it cannot: tests then skip)
set -uo pipefail

have_new_criu() {
  local bin
  for bin in criu /usr/local/sbin/criu; do
    command -v "$bin" >/dev/null 2>&1 || continue
    "$bin" --version 2>/dev/null | grep -qE 'Version: (4\.([1-9]|[1-9][0-9])|[5-9]\.)' && return 0
  done
  return 1
}
if have_new_criu; then echo "install_criu: CRIU >= 4.1 is already installed"; exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_criu: needs root and apt; CRIU snapshot tests will skip"; exit 0
fi

# The Debian mirror this host's apt already uses (deb822 sources first, then sources.list).
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i !~ /^\[/) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then echo "install_criu: no Debian mirror in this host's apt sources; skipping"; exit 0; fi

work=${1:-$(mktemp -d)}
mkdir -p "$work/apt/lists/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$work/apt/sources.list"
apto=(-o "Dir::Etc::sourcelist=$work/apt/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$work/apt/lists")
export DEBIAN_FRONTEND=noninteractive
apt-get "${apto[@]}" update -qq || { echo "install_criu: cannot read trixie's sources; skipping"; exit 0; }
# Only the upstream tarball is needed (a mirror can lag on the Debian part: its failure is fine).
(cd "$work" && apt-get "${apto[@]}" source --download-only -qq criu) || true
tarball=$(ls "$work"/criu_4.*.orig.tar.* 2>/dev/null | sort -V | tail -1)
if [ -z "$tarball" ]; then echo "install_criu: trixie's criu source did not download; skipping"; exit 0; fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential pkg-config libbsd-dev libcap-dev libgnutls28-dev \
  libnet1-dev libnftables-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler protobuf-compiler \
  uuid-dev python3-protobuf libaio-dev iproute2 util-linux >/dev/null || { echo "install_criu: build dependencies failed; skipping"; exit 0; }
src="$work/src"; rm -rf "$src"; mkdir -p "$src"
tar -xf "$tarball" -C "$src" --strip-components=1
# CRIU probes the kernel on every run (~25 ms of each restore) unless it can keep what it found in
# RUNDIR/criu.kdat, which it does only on a tmpfs: /run where that is one, else /dev/shm.
rundir=/run
if [ "$(stat -f -c %T /run 2>/dev/null)" != tmpfs ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  rundir=/dev/shm
fi
if ! make -C "$src" -j"$(nproc)" RUNDIR="$rundir" criu >"$work/make.log" 2>&1; then
  echo "install_criu: the build failed (last lines follow); skipping"; tail -20 "$work/make.log"; exit 0
fi
install -m 0755 "$src/criu/criu" /usr/local/sbin/criu
/usr/local/sbin/criu --version | head -1
/usr/local/sbin/criu check || echo "install_criu: installed, but 'criu check' fails on this kernel: snapshot tests will skip"
