"""Score normalisation variants, prototyped in numpy (bench/RESULTS.md section 5).

The scheme with zero fill, uniform weights, per-group keys and random drops, scored through the
closed form of docs/DESIGN.md section 2 (per-group cosines), on a synthetic gallery
(pslerp.synth, seed 42): rank-1 of 1000 mated probes with
  none   the mean group cosine (norm=none),
  entry  the mean cosine standardised by its cohort mean and sd per entry,
  group  each group's cosine standardised per entry and group, then averaged (norm=cohort),
  gz     'group', then standardised again by the combination's own cohort sd,
and D_sys (template cosine; projection estimates with stolen keys) of two enrolments of
2000 identities' two samples under fresh keys. The cohort: other identities of the same draw.

    PYTHONPATH=build/python /usr/bin/python3 bench/norm_variants.py --n 100000 --t 0.8,0.85,0.9,0.95 --drop 0,1,2,4
"""
import argparse
import sys

import numpy as np

import pslerp


def gnorm(x, G, d):
    x = x.reshape(len(x), G, d)
    return x / np.linalg.norm(x, axis=2, keepdims=True)


def protect(x, G, d, t, drop, rng):
    xg = gnorm(x, G, d)
    k = rng.standard_normal(xg.shape).astype(np.float32)
    k /= np.linalg.norm(k, axis=2, keepdims=True)
    th = np.arccos(np.clip((xg * k).sum(2, keepdims=True), -1, 1))
    s = np.maximum(np.sin(th), 1e-7)
    v = np.sin((1 - t) * th) / s * xg + np.sin(t * th) / s * k
    m = np.ones_like(v, dtype=bool)
    if drop:
        np.put_along_axis(m, rng.random(v.shape).argsort(axis=2)[:, :, :drop], False, axis=2)
    T = v * m
    return (T / np.linalg.norm(T, axis=2, keepdims=True)).astype(np.float32), k, m


def group_cos(q, T, k, m, G, d, t):
    """(nq, N, G) cosines of the transformed probes with the templates (closed form)."""
    qg = gnorm(q, G, d)
    out = np.empty((len(q), len(T), G), np.float32)
    mf = m.astype(np.float32)
    mk = mf * k
    for g in range(G):
        Q = qg[:, g]
        th = np.arccos(np.clip(Q @ k[:, g].T, -1, 1))
        s = np.maximum(np.sin(th), 1e-7)
        a, b = np.sin((1 - t) * th) / s, np.sin(t * th) / s
        ke = (k[:, g] * T[:, g]).sum(1)[None]
        kmk = (mk[:, g] * k[:, g]).sum(1)[None]
        den = a * a * ((Q * Q) @ mf[:, g].T) + 2 * a * b * (Q @ mk[:, g].T) + b * b * kmk
        out[:, :, g] = (a * (Q @ T[:, g].T) + b * ke) / np.sqrt(np.maximum(den, 1e-12))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--cohort", type=int, default=256)
    ap.add_argument("--t", default="0.9")
    ap.add_argument("--drop", default="2")
    a = ap.parse_args()
    G, d, N, m = a.groups, 16, a.n, a.cohort
    sp = pslerp.synth(groups=G, group_dim=d, gallery_size=N + m, mated_probes=N + m, nonmated_probes=10, seed=42)
    gal, coh, lab = sp.gallery[:N], sp.gallery[N:], sp.probe_labels
    mp = np.where((lab >= 0) & (lab < N))[0][:1000]
    q, ql = sp.probes[mp], lab[mp]
    print(f"N={N} G={G} cohort={m}: unprotected rank-1 "
          f"{np.mean(np.argmax(gnorm(q, G, d).reshape(len(q), -1) @ gnorm(gal, G, d).reshape(N, -1).T, 1) == ql):.3f}")
    x2, _ = pslerp.synth(identities=2000, samples_per_identity=2, groups=G, group_dim=d, seed=7)
    rng = np.random.default_rng(1)

    def dsys(mated, nonmated, bins=100):  # the project's one metrics library
        return pslerp.unlinkability(mated.astype(np.float32), nonmated.astype(np.float32), bins=bins)["d_sys"]

    def estimate(T, k, M):
        e = (T - (T * k).sum(2, keepdims=True) * k * M) * M
        return e / np.maximum(np.linalg.norm(e, axis=2, keepdims=True), 1e-9)

    def link(A, B):
        S = np.einsum("igd,jgd->ij", A, B) / G
        return dsys(np.diag(S), S[~np.eye(len(S), dtype=bool)][:200000])

    for t in map(float, a.t.split(",")):
        for drop in map(int, a.drop.split(",")):
            Ta, ka, Ma = protect(x2[0::2], G, d, t, drop, rng)
            Tb, kb, Mb = protect(x2[1::2], G, d, t, drop, rng)
            T, k, M = protect(gal, G, d, t, drop, rng)
            C = group_cos(coh, T, k, M, G, d, t)
            mu_g, sd_g = C.mean(0), C.std(0)
            S_e = ((C - mu_g) / sd_g).mean(2).std(0)
            mu_e, sd_e = C.mean(2).mean(0), C.mean(2).std(0)
            hits = dict(none=0, entry=0, group=0, gz=0)
            for i in range(0, len(q), 100):
                S = group_cos(q[i:i + 100], T, k, M, G, d, t)
                Z = ((S - mu_g) / sd_g).mean(2)
                for v, sc in (("none", S.mean(2)), ("entry", (S.mean(2) - mu_e) / sd_e), ("group", Z), ("gz", Z / S_e)):
                    hits[v] += np.sum(np.argmax(sc, 1) == ql[i:i + 100])
            print(f"t={t} drop={drop} D_sys template {link(Ta, Tb):.3f} projection {link(estimate(Ta, ka, Ma), estimate(Tb, kb, Mb)):.3f} "
                  "rank-1 " + " ".join(f"{v}={h / len(q):.3f}" for v, h in hits.items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
