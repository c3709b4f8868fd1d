#!/usr/bin/env bash
# Configures and builds pslerp into ./build (Release, everything that the machine supports).
# Usage: scripts/build.sh [extra cmake options]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=/usr/bin/python3 "$@"
cmake --build build -j"$jobs"
