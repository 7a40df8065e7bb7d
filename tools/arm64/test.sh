#!/usr/bin/env bash
# `make test-arm64`: the test suite on aarch64, under qemu user-mode emulation, in a Debian bookworm
# arm64 root file system standing in for Raspberry Pi OS (64-bit). Needs root (debootstrap, chroot,
# mounts) and a Debian host (apt-get).
#
# 1. The root file system is built once and cached in $MENJIN_ARM64_CACHE (default
#    /var/cache/menjin-arm64) in two layers: the Debian base (debootstrap plus the system packages
#    that docs/install.md names), keyed by the package list, and the project's venv on top of it,
#    keyed by a hash of pyproject.toml. A changed pyproject.toml rebuilds only the venv.
# 2. Each run mounts an overlay on the cached tree (the cache is never modified by tests), copies
#    the working tree in, installs it as docs/install.md says, bind-mounts the models and photos
#    (../shared, or MENJIN_MODELS / MENJIN_FACES; a run without them fails, as the numerics would
#    only skip) read-only, and runs the named subset in tools/arm64/subset.txt (or the file in
#    MENJIN_ARM64_SUBSET), timing each part and printing its slowest tests and any skips.
# 3. Everything mounted is unmounted on exit, also on failure or Ctrl-C.
#
# Emulated timings are not board timings (docs/performance.md): they prove nothing about speed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$REPO/tools/arm64"
# The real models and photos, as for `make test`: by default the shared folders beside the repo.
MODELS=${MENJIN_MODELS:-$(cd "$REPO/.." && pwd)/shared/models}
FACES=${MENJIN_FACES:-$(cd "$REPO/.." && pwd)/shared/faces}
CACHE=${MENJIN_ARM64_CACHE:-/var/cache/menjin-arm64}
SUITE=bookworm
# Empty: debootstrap's default Debian mirror, the same that apt uses.
MIRROR=${MENJIN_DEBIAN_MIRROR:-}
# Raise to force a rebuild of the base layer when the way it is built changes.
BASE_VERSION=1
# Packages Raspberry Pi OS has and Debian lacks; pip installs their PyPI wheels instead.
PI_OS_ONLY="python3-lgpio"
# What the test subset needs beyond the install instructions (the Makefile's TEST_DEPS less the
# browser, which only station page tests use).
TEST_PACKAGES="mosquitto socat"
# pytest's per-test limit under emulation (pyproject's 300 s is for native speed; one face test
# that takes 20 s on x86 takes minutes emulated on a busy machine).
EMULATED_TEST_TIMEOUT=1800
GUEST_SHARED=/opt/shared

log() { printf '[test-arm64 %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mounts): sudo make test-arm64"
# Without them the numerics tests would skip and a green run would prove nothing about ARM.
[ -d "$MODELS" ] || die "no face models in $MODELS (set MENJIN_MODELS)"
[ -d "$FACES/enrol" ] || die "no test photos in $FACES (set MENJIN_FACES)"

# --- the install instructions, read from docs/install.md so that this test follows them -------
install_doc="$REPO/docs/install.md"
apt_line=$(grep -m1 -E '^sudo apt-get install -y ' "$install_doc") \
  || die "no 'sudo apt-get install -y ...' line in docs/install.md"
clone_line=$(grep -m1 -E '^sudo git clone [^ ]+ /' "$install_doc") \
  || die "no 'sudo git clone URL /DIR' line in docs/install.md"
pip_line=$(grep -m1 -E '^sudo [^ ]*\.venv/bin/pip install ' "$install_doc") \
  || die "no 'sudo .../.venv/bin/pip install ...' line in docs/install.md"
venv_line=$(grep -m1 -E '^sudo python3 -m venv ' "$install_doc") \
  || die "no 'sudo python3 -m venv ...' line in docs/install.md"
strip_comment() { sed -e 's/[[:space:]]*#.*$//' -e 's/^sudo //'; }
apt_cmd=$(printf '%s' "$apt_line" | strip_comment)
pip_cmd=$(printf '%s' "$pip_line" | strip_comment)
venv_cmd=$(printf '%s' "$venv_line" | strip_comment)
for pkg in $PI_OS_ONLY; do apt_cmd=${apt_cmd//" $pkg"/}; done
# Where the board's checkout lives: the venv and pip lines name it (the tree is copied there).
GUEST_REPO=$(printf '%s' "$clone_line" | strip_comment | awk '{print $4}')

# --- host: qemu-user-static, debootstrap, binfmt_misc -----------------------------------------
host_setup() {
  local missing=""
  command -v qemu-aarch64-static >/dev/null || missing="$missing qemu-user-static"
  command -v debootstrap >/dev/null || missing="$missing debootstrap"
  command -v update-binfmts >/dev/null || missing="$missing binfmt-support"
  if [ -n "$missing" ]; then
    log "installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 binfmt handler not registered"
}

# --- mounts, undone by the trap ---------------------------------------------------------------
MOUNTS=()
mnt() {  # mnt TARGET MOUNT-ARGS...: mount and remember for the trap
  local target=$1; shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}
kill_guests() {  # processes whose root is $1 (mosquitto or daemons a test left behind)
  local root=$1 pid
  for pid in /proc/[0-9]*; do
    [ "$(readlink "$pid/root" 2>/dev/null)" = "$root" ] && kill -9 "${pid#/proc/}" 2>/dev/null
  done
  return 0
}
cleanup() {
  local rc=$? i
  set +e  # undo every mount whatever fails on the way
  for root in "${ROOTS[@]}"; do kill_guests "$root"; done
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null \
      || log "could not unmount ${MOUNTS[i]}"
  done
  MOUNTS=()
  [ -n "${WORK:-}" ] && rm -rf --one-file-system "$WORK"
  [ -n "${BUILDING:-}" ] && rm -rf --one-file-system "$BUILDING"
  exit "$rc"
}
ROOTS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_system() {  # the kernel file systems a chroot needs; /sys for onnxruntime's CPU probe
  local root=$1
  ROOTS+=("$root")
  mnt "$root/proc" -t proc proc
  # qemu-user shows the host's x86 /proc/cpuinfo; with /sys mounted, ONNX Runtime's CPU probe then
  # crashes (without /sys it only warns and detects no CPU features). A Raspberry Pi 4's
  # /proc/cpuinfo (Cortex-A72, as QEMU_CPU below emulates) for the host's CPU count fixes both.
  # Written beside and renamed: a concurrent run's bind mount keeps the file it has.
  pi4_cpuinfo >"$CACHE/cpuinfo.$$"
  mv "$CACHE/cpuinfo.$$" "$CACHE/cpuinfo"
  mnt "$root/proc/cpuinfo" --bind "$CACHE/cpuinfo"
  mnt "$root/sys" -t sysfs sysfs
  mnt "$root/dev" --bind /dev
  mnt "$root/dev/pts" --bind /dev/pts
  # The host's CA bundle, so pip and apt over HTTPS trust what the host trusts.
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
}
unmount_all() {
  local i
  for root in "${ROOTS[@]}"; do kill_guests "$root"; done
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount "${MOUNTS[i]}"; done
  MOUNTS=()
  ROOTS=()
}

pi4_cpuinfo() {  # one Cortex-A72 entry per possible host CPU, as a Pi 4 on 64-bit OS prints
  local last cpu
  last=$(cut -d- -f2 /sys/devices/system/cpu/possible)
  for ((cpu = 0; cpu <= last; cpu++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$cpu"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n'
    printf 'CPU revision\t: 3\n\n'
  done
  printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B\n'
}

guest() {  # guest ROOT COMMAND: a login-free shell in the chroot with a clean environment
  local root=$1; shift
  env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive QEMU_CPU=cortex-a72 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=60 PIP_NO_INPUT=1 \
    MENJIN_MODELS=$GUEST_SHARED/models MENJIN_FACES=$GUEST_SHARED/faces \
    chroot "$root" /bin/bash -euo pipefail -c "$*"
}

copy_tree() {  # the working tree (tracked and untracked, not ignored) into ROOT/opt/menjin
  local dest=$1/${GUEST_REPO#/}
  mkdir -p "$dest"
  find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf --one-file-system {} +
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
     | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
     | tar --null -T - -cf -) | tar -xf - -C "$dest"
}

# --- layer 1: Debian base ---------------------------------------------------------------------
build_base() {
  local dir=$1
  BUILDING="$dir.partial"
  rm -rf --one-file-system "$BUILDING"
  log "debootstrap $SUITE arm64 (minbase)"
  local t0=$SECONDS
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip \
    "$SUITE" "$BUILDING" ${MIRROR:+"$MIRROR"} >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  log "debootstrap took $((SECONDS - t0)) s"
  t0=$SECONDS
  mount_system "$BUILDING"
  log "docs/install.md step 1 (Debian stand-in for Raspberry Pi OS): $apt_cmd"
  guest "$BUILDING" "apt-get update -qq && $apt_cmd -qq --no-install-recommends && \
    apt-get install -y -qq --no-install-recommends $TEST_PACKAGES && apt-get clean" \
    >"$CACHE/apt.log" 2>&1 || { tail -30 "$CACHE/apt.log" >&2; die "apt-get in the root file system failed"; }
  unmount_all
  log "system packages took $((SECONDS - t0)) s"
  mv "$BUILDING" "$dir"
  BUILDING=""
}

# --- layer 2: the project's venv --------------------------------------------------------------
build_venv() {
  local base=$1 dir=$2
  BUILDING="$dir.partial"
  rm -rf --one-file-system "$BUILDING"
  log "copying the base layer"
  cp -a "$base" "$BUILDING"
  mount_system "$BUILDING"
  copy_tree "$BUILDING"
  local t0=$SECONDS
  log "docs/install.md step 2: $venv_cmd; $pip_cmd"
  guest "$BUILDING" "cd $GUEST_REPO && $venv_cmd && $pip_cmd && \
    .venv/bin/python -c 'import cv2, onnxruntime, lgpio; print(\"board venv: cv2\", cv2.__version__)'"
  log "install as documented took $((SECONDS - t0)) s"
  t0=$SECONDS
  log "test tools: .[dev], then the headless OpenCV (see tools/headless-opencv.sh)"
  guest "$BUILDING" "cd $GUEST_REPO && .venv/bin/pip install -q '.[dev]' 'setuptools>=69' wheel && \
    bash tools/headless-opencv.sh .venv"
  log "test tools took $((SECONDS - t0)) s"
  unmount_all
  rm -rf "${BUILDING:?}/${GUEST_REPO#/}/build"
  mv "$BUILDING" "$dir"
  BUILDING=""
}

cpu_now() {  # sets CPU_NOW: CPU seconds (user + system) of all finished child processes so far
  # `times` must run in this shell, not in a $(...) subshell: a forked shell starts with no
  # finished children, so it would report 0.
  times >"$CACHE/times.$$"
  CPU_NOW=$(awk 'END { split($1, u, /[ms]/); split($2, s, /[ms]/); print int(u[1]*60 + u[2] + s[1]*60 + s[2]) }' \
    "$CACHE/times.$$")
  rm -f "$CACHE/times.$$"
}

select_files() {  # shell code that sets the array `files`: the globs' matches less the !globs
  local word include="" exclude='""'
  local -
  set -f  # the globs are expanded in the guest, not here
  for word in $1; do
    case "$word" in '!'*) exclude+="|${word#!}" ;; *) include+=" $word" ;; esac
  done
  printf 'shopt -s nullglob; files=(); for f in%s; do case $f in %s) ;; *) files+=("$f") ;; esac; done' \
    "$include" "$exclude"
}

# --- a run: overlay on the cached tree, the current working tree, the named subset ------------
run_subset() {
  local lower=$1
  WORK=$(mktemp -d /tmp/menjin-arm64.XXXXXX)
  mkdir -p "$WORK/upper" "$WORK/work" "$WORK/root"
  mnt "$WORK/root" -t overlay overlay \
    -o "lowerdir=$lower,upperdir=$WORK/upper,workdir=$WORK/work"
  local root=$WORK/root
  mount_system "$root"
  local src dest
  for pair in "$MODELS:models" "$FACES:faces"; do
    src=${pair%:*} dest=$root$GUEST_SHARED/${pair##*:}
    mkdir -p "$dest"
    mnt "$dest" --bind "$src"
    mount -o remount,bind,ro "$dest"
  done
  # The cached venv holds the dependencies; the current tree is installed over it, as documented.
  copy_tree "$root"
  local t0=$SECONDS
  guest "$root" "cd $GUEST_REPO && .venv/bin/pip install -q --no-deps --no-build-isolation ."
  log "installing the current tree took $((SECONDS - t0)) s"
  guest "$root" "cd $GUEST_REPO && .venv/bin/python -c 'import platform, cv2, onnxruntime, numpy; \
print(platform.machine(), \"cv2\", cv2.__version__, \"onnxruntime\", onnxruntime.__version__, \
\"numpy\", numpy.__version__)'"

  local summary="" name paths start took rc cpu cpu_start
  while read -r name paths; do
    case "$name" in ''|'#'*) continue ;; esac
    log "part '$name': $paths"
    cpu_now
    start=$SECONDS cpu_start=$CPU_NOW
    set +e
    guest "$root" "cd $GUEST_REPO && $(select_files "$paths") && \
      if [ \${#files[@]} = 0 ]; then echo 'no test files match: $paths' >&2; exit 4; fi && \
      .venv/bin/python -m pytest -q -p no:cacheprovider -rs --durations=5 \
      --timeout=$EMULATED_TEST_TIMEOUT \
      \"\${files[@]}\""
    rc=$?
    set -e
    cpu_now
    took=$((SECONDS - start)) cpu=$((CPU_NOW - cpu_start))
    summary+=$(printf '\n  %-10s %5d s wall %5d s CPU  %s' "$name" "$took" "$cpu" \
      "$([ $rc = 0 ] && echo passed || echo "FAILED ($rc)")")
    [ $rc = 0 ] || FAILED=1
  done <"${MENJIN_ARM64_SUBSET:-$HERE/subset.txt}"
  log "parts:$summary"
}

main() {
  local t_all=$SECONDS
  host_setup
  mkdir -p "$CACHE"
  # One build of the cache at a time (a CI run and a run by hand on the same machine); the tests
  # run on private overlays and need no lock.
  exec 9>"$CACHE/lock"
  flock 9
  local base_key venv_key
  base_key=$(printf '%s\n' "$SUITE" "$BASE_VERSION" "$apt_cmd" "$TEST_PACKAGES" "$MIRROR" \
    | sha256sum | cut -c1-16)
  venv_key=$( (printf '%s\n' "$base_key" "$venv_cmd" "$pip_cmd"; cat "$REPO/pyproject.toml" \
    "$REPO/tools/headless-opencv.sh") | sha256sum | cut -c1-16)
  local base=$CACHE/base-$base_key venv=$CACHE/venv-$venv_key
  if [ ! -d "$base" ]; then
    build_base "$base"
  else
    log "cached base layer: $base"
  fi
  if [ ! -d "$venv" ]; then
    build_venv "$base" "$venv"
    # Older venv layers are dead weight once pyproject.toml changed.
    find "$CACHE" -maxdepth 1 -name 'venv-*' ! -path "$venv" -exec rm -rf --one-file-system {} +
  else
    log "cached venv layer: $venv"
  fi
  exec 9>&-
  log "root file system ready after $((SECONDS - t_all)) s"
  FAILED=0
  run_subset "$venv"
  cpu_now
  log "test-arm64 took $((SECONDS - t_all)) s in all, $CPU_NOW s of CPU"
  return $FAILED
}

main "$@"; exit $?  # one line: bash reads no further, so editing this file mid-run is safe
