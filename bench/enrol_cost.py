"""Enrolment cost of cohort score normalisation: the same 50,000 x 128 synthetic features added
to PSlerp8x16(norm=none) and PSlerp8x16(norm=cohort), alternately, 3 times each, 1 thread
(bench/RESULTS.md section 5.4):

    PYTHONPATH=build/python OMP_NUM_THREADS=1 /usr/bin/python3 bench/enrol_cost.py
"""
import time, warnings, numpy as np, pslerp
warnings.simplefilter("ignore")
x, _ = pslerp.synth(50000, 1, seed=3)
t = pslerp.synth(2000, 1, seed=4)[0]
res = {"none": [], "cohort": []}
for r in range(3):
    for norm in ("none", "cohort"):
        idx = pslerp.index_factory(128, f"PSlerp8x16(norm={norm})")
        idx.train(t)
        t0 = time.perf_counter(); idx.add(x); res[norm].append(time.perf_counter() - t0)
for k, v in res.items():
    print(k, f"median {np.median(v):.3f} s for 50000 ({50000/np.median(v):.0f}/s)", [round(a, 3) for a in v])
print("ratio cohort/none", np.median(res["cohort"]) / np.median(res["none"]))
