"""pslerp from Python, notebook style: enrol a synthetic gallery in an exhaustive and an IVF
protected index, search, verify, de-duplicate, save and load.

Run from a build folder:  cd <build> && PYTHONPATH=python /usr/bin/python3 ../examples/python_example.py
"""

import os
import tempfile

import numpy as np

import pslerp

# %% 1. Synthetic faces: 2000 enrolled identities, 200 probes of them and 100 strangers.
# Features are float32 (n, 128): 8 groups of 16 dimensions, as the default model gives.
data = pslerp.synth(groups=8, group_dim=16, seed=1, gallery_size=2000, mated_probes=200,
                    nonmated_probes=100)
print("gallery", data.gallery.shape, "probes", data.probes.shape)
# Training features of other people (identities 3000..): an IVF centroid is an average of
# its training features, so it should not learn them from the people it enrols.
x_other, _ = pslerp.synth(3000 + 40 * 32, 1, groups=8, group_dim=16, seed=1)
train = np.ascontiguousarray(x_other[3000:])

# %% 2. Two protected indexes. Only protected templates, keys and drop masks are stored;
# add() and search() take raw features.
#   - exhaustive: every search scores every entry, exactly;
#   - IVF: entries are filed in 32 lists by their (centred) raw feature; a search scores the
#     entries of the nprobe lists nearest to the probe.
flat = pslerp.index_factory(128, "PSlerp8x16")
ivf = pslerp.index_factory(128, "IVF32,PSlerp8x16")
for index in (flat, ivf):
    index.train(train)  # the feature centring; for the IVF also its 32 centroids (k-means)
    index.add_with_ids(data.gallery, data.gallery_labels)
    print(index, f"{index.bytes_per_entry} bytes per entry")
print(f"IVF: nprobe {ivf.nprobe} of {ivf.nlist} lists by default, list imbalance {ivf.imbalance():.2f}")

# %% 3. 1:N identification: (scores, ids), best first. The IVF's nprobe trades speed for
# recall, per index (ivf.nprobe = ...) or per call (nprobe=...). nprobe = nlist scores every
# entry as the exhaustive index does (the scores differ here only because each index drew its
# own keys).
mated = data.probe_labels >= 0
D, I = flat.search(data.probes, 5)
print(f"exhaustive: rank-1 on mated probes {np.mean(I[mated, 0] == data.probe_labels[mated]):.3f}")
for nprobe in (ivf.nprobe, 16, ivf.nlist):
    D_ivf, I_ivf = ivf.search(data.probes, 5, nprobe=nprobe)
    print(f"IVF, nprobe {nprobe:2d}: rank-1 on mated probes "
          f"{np.mean(I_ivf[mated, 0] == data.probe_labels[mated]):.3f}")

# %% 4. 1:1 verification by id (the IVF finds an entry by its id, whatever its list), and a
# threshold from the score distributions.
claimed = data.probe_labels[mated]
genuine = ivf.verify(data.probes[mated], claimed)
impostor = ivf.verify(data.probes[mated], (claimed + 1) % 2000)
eer, threshold = pslerp.equal_error_rate(genuine, impostor)
print(f"verification EER {eer:.3f} at threshold {threshold:.3f}")
print(f"accepted at that threshold: genuine {np.mean(genuine >= threshold):.3f}, "
      f"impostor {np.mean(impostor >= threshold):.3f}")
print("one probe, one claim:", ivf.verify(data.probes[0], int(claimed[0])))

# %% 5. De-duplication: a batch with two re-enrolments of known people, one new person
# twice, and one new person once. enroll=True adds one entry per new identity.
x_new, _ = pslerp.synth(2, 2, groups=8, group_dim=16, seed=99)  # 2 unseen people, 2 samples each
batch = np.concatenate([data.gallery[:2], x_new[:1], x_new[:1], x_new[2:3]])
res = ivf.deduplicate(batch, threshold=0.99, enroll=True,
                      ids=np.arange(10_000, 10_000 + len(batch), dtype=np.int64))
print(res)
print("already enrolled:", [e[0][0] if e else None for e in res.existing])
print("new identities enrolled as", res.enrolled_ids.tolist(), "- the IVF now holds", ivf.ntotal)

# %% 6. Save and load (one sealed file: encrypted and authenticated under a secret the file does
# not hold; pickling writes the clear format) and check the answers.
secret = pslerp.generate_secret()  # 32 bytes: keep them apart from the file
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "gallery.pslerp")
    pslerp.write_index(ivf, path, secret=secret)
    loaded = pslerp.read_index(path, secret=secret)  # an IndexIVFProtectedSlerp again
    print("file size", os.path.getsize(path), "bytes; loaded", loaded)
    _, I2 = loaded.search(data.probes, 5)
    assert np.array_equal(I2, ivf.search(data.probes, 5)[1])
    print("the loaded index answers as the saved one did")

# %% 7. The scheme on its own: protect features with explicit keys and masks and match
# raw probes against the protected templates.
p = pslerp.Params(8, 16, t=0.7)
templates, keys, masks, weights = pslerp.protect(data.gallery[:3], p)
print("mated scores", pslerp.match(data.probes[:3], templates, keys, masks, p, weights))
