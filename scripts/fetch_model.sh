#!/usr/bin/env bash
# Fetches the pretrained face-recognition weights of @vladmandic/face-api (MIT) from the npm
# registry into a models folder. Only model/face_recognition_model.bin and its tfjs manifest
# are kept; the weights are never committed. Idempotent: does nothing when both files exist.
# Usage: scripts/fetch_model.sh [models_dir]   (default ./models)
set -euo pipefail

version="1.7.15"
package="@vladmandic/face-api@${version}"
dest="${1:-./models}"
files=(face_recognition_model.bin face_recognition_model-weights_manifest.json)

have_all=1
for f in "${files[@]}"; do
  [[ -s "${dest}/${f}" ]] || have_all=0
done
if ((have_all)); then
  echo "fetch_model: ${dest} already has the face-api ${version} recognition model"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch_model: npm is required (apt-get install npm)" >&2; exit 1; }
mkdir -p "${dest}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "fetch_model: npm pack ${package}"
tarball="$(cd "${work}" && npm pack --silent "${package}" | tail -n 1)"
members=()
for f in "${files[@]}"; do members+=("package/model/${f}"); done
tar -xzf "${work}/${tarball}" -C "${work}" "${members[@]}"
for f in "${files[@]}"; do
  mv -f "${work}/package/model/${f}" "${dest}/${f}.tmp"
  mv -f "${dest}/${f}.tmp" "${dest}/${f}"
done
echo "fetch_model: wrote ${dest}/${files[0]} and ${dest}/${files[1]}"
