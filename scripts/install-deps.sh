#!/usr/bin/env bash
# Installs the Debian packages physgrad needs, when any is missing (a no-op otherwise).
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  python3 python3-torch libtorch-dev
  libpetsc-real-dev libfftw3-dev
  python3-numpy python3-scipy python3-matplotlib python3-tqdm
  python3-pytest python3-hypothesis
  python3-setuptools python3-wheel python3-pip python3-venv
  "$@"
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "physgrad: installing missing Debian packages: ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "physgrad: run as root or install sudo to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
