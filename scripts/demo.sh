#!/usr/bin/env bash
# The main job end to end on a fresh Debian machine: set up, build, then
#  1. a synthetic gallery (100k identities by default) enrolled protected twice, in the
#     exhaustive index and in the IVF index (trained on other identities), mated and non-mated
#     probes searched 1:N and verified 1:1 beside FAISS IndexFlatIP and IndexIVFFlat on the same
#     raw vectors (about a minute on 2 cores);
#  2. the packaged face model (npm @vladmandic/face-api) turning face photos into protected
#     templates, when the sample faces in ../shared/data are there: a gallery of a few dozen,
#     so the exhaustive index (an IVF index pays off from tens of thousands of entries).
# Extra arguments go to `pslerp demo` (e.g. --gallery 1000000, --nlist 4096, --nprobe 64).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_model.sh models
bash scripts/build.sh -DPSLERP_BUILD_TESTS=OFF
./build/tools/pslerp demo "$@"

faces=../shared/data/faces/dlib-johns
if [[ -d "$faces" && -x build/tools/pslerp ]] && ./build/tools/pslerp --help 2>&1 | grep -q extract; then
  echo
  echo "== face photos -> protected templates (packaged model, $faces)"
  out=$(mktemp -d)
  ./build/tools/pslerp extract "$faces" --aligned --model-dir models -o "$out/faces.npy" --labels "$out/labels.txt"
  ./build/tools/pslerp keygen --out "$out/faces.key"
  ./build/tools/pslerp enroll "$out/faces.npy" --out "$out/faces.pslerp" --factory PSlerp8x16 --secret-file "$out/faces.key"
  echo "(each photo is also enrolled: the top ranks are its own entry and the same person's other photos;"
  echo " scores are cohort z-scores, so another photo of the person can outrank the photo's own entry)"
  ./build/tools/pslerp search --index "$out/faces.pslerp" --secret-file "$out/faces.key" "$out/faces.npy" -k 3
  ./build/tools/pslerp info "$out/faces.pslerp" --secret-file "$out/faces.key"
  rm -rf "$out"
else
  echo "(no ../shared/data faces here: the face-photo part of the demo is skipped)"
fi
