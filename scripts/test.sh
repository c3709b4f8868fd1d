#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds pslerp and runs every test: GoogleTest through ctest,
# then the Python package with pytest, then the fuzzers. Tests that need ../shared/data or the
# face model skip with a message where those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
bash scripts/setup.sh
bash scripts/fetch_model.sh models || echo "test.sh: face model not fetched; model tests will skip"
bash scripts/build.sh -DPSLERP_BUILD_TESTS=ON -DPSLERP_BUILD_PYTHON=ON
export PSLERP_MODEL_DIR="$PWD/models"
(cd build && ctest --output-on-failure --no-tests=error -j"$jobs")
(cd build && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python)

# The fuzzers (libFuzzer, fuzz/): a separate clang build with AddressSanitizer of only the fuzz
# targets and what they link, each run for PSLERP_FUZZ_SECONDS (20) from a seed corpus written
# at test time. A crash, sanitizer report, leak or hang fails; its input is kept in
# build-fuzz/fuzz/runs/artifacts/.
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DPSLERP_BUILD_FUZZ=ON \
  -DPSLERP_BUILD_TESTS=OFF -DPSLERP_BUILD_BENCH=OFF -DPSLERP_BUILD_PYTHON=OFF -DPSLERP_BUILD_EXTRACTOR=OFF \
  -DPython3_EXECUTABLE=/usr/bin/python3
cmake --build build-fuzz -j"$jobs" --target fuzz_seeds fuzz_index_file fuzz_npy fuzz_sealed
(cd build-fuzz && ctest --output-on-failure --no-tests=error -L fuzz -j"$jobs")
