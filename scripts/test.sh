#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds pslerp and runs every test: GoogleTest through ctest,
# then the Python package with pytest. Tests that need ../shared/data or the face model skip
# with a message where those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_model.sh models || echo "test.sh: face model not fetched; model tests will skip"
bash scripts/build.sh -DPSLERP_BUILD_TESTS=ON -DPSLERP_BUILD_PYTHON=ON
export PSLERP_MODEL_DIR="$PWD/models"
(cd build && ctest --output-on-failure --no-tests=error -j"$(nproc 2>/dev/null || echo 2)")
(cd build && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python)
