#!/usr/bin/env bash
# The IVF benchmark set of bench/RESULTS.md section 2: protected IVF vs exhaustive protected
# search vs unprotected IndexIVFFlat (bench_ivf), de-duplication through the IVF (bench_dedup),
# and what the cell reveals (bench_leak). Run from the repository root after
# `bash scripts/build.sh`, on a quiet machine. Writes bench/results/*.{txt,csv,json} and the plot
# bench/results/ivf.png. Steps: 1 is the 1M x 512 target run (about 40 min on 2 quiet cores,
# most of it k-means for 4096 lists); 2-5 take about 30 min together.
set -euo pipefail
cd "$(dirname "$0")/.."
b=build/bench
out=bench/results
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE
common=(--queries 1000 --single-queries 100 --repeats 3 --nprobe 8,16,32,64,128,256)
step=${1:-all}
if [[ $step == all || $step == 1 ]]; then
  # 1. The target: 512-D structured identities (generator default at 512-D), 1M entries.
  $b/bench_ivf --n 1000000 --dims 512 --nlist 1024,4096 --train 160000 "${common[@]}" --out $out \
    | tee $out/bench_ivf_n1000000_d512.txt
fi
if [[ $step == all || $step == 2 ]]; then
  # 2. 100k at 512-D (structured) and 128-D (isotropic: the generator's 128-D default), and 128-D
  #    with the 512-D centre decay (structured); 1M x 128 isotropic.
  $b/bench_ivf --n 100000 --dims 512,128 --nlist 256,1024 --train 50000 "${common[@]}" --out $out \
    | tee $out/bench_ivf_n100000.txt
  $b/bench_ivf --n 100000 --dims 128 --decay 0.64 --nlist 256,1024 --train 50000 "${common[@]}" --out $out \
    | tee $out/bench_ivf_n100000_d128_decay0.64.txt
  $b/bench_ivf --n 1000000 --dims 128 --nlist 1024 --train 50000 "${common[@]}" --out $out \
    | tee $out/bench_ivf_n1000000_d128.txt
fi
if [[ $step == all || $step == 3 ]]; then
  # 3. De-duplication of a 2000-item batch against 1M x 512 through the IVF vs exhaustive.
  $b/bench_dedup --n 1000000 --dims 512 --nlist 1024 --nprobe 16,32,64,128 --train 50000 --out $out \
    | tee $out/bench_dedup_n1000000_d512.txt
fi
if [[ $step == all || $step == 4 ]]; then
  # 4. What the cell reveals, 100k entries.
  $b/bench_leak --n 100000 --dims 512,128 --nlist 256,1024 --train 50000 --out $out | tee $out/bench_leak_n100000.txt
fi
if [[ $step == all || $step == 5 ]]; then
  /usr/bin/python3 bench/plot_ivf.py $out/ivf_n1000000_d512.csv $out/ivf_n100000_d512.csv $out/ivf_n100000_d128.csv \
    $out/ivf_n100000_d128_decay0.64.csv $out/ivf_n1000000_d128.csv -o $out/ivf.png
fi
