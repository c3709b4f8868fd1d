"""pslerp from Python, notebook style: enrol a synthetic gallery, search, verify,
de-duplicate, save and load.

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

# %% 2. A protected index with an HNSW coarse stage. Only protected templates, keys and drop
# masks are stored; add() and search() take raw features.
index = pslerp.index_factory(128, "PSlerp8x16,HNSW32")
index.train(data.gallery)  # learns the feature centring (and trains the coarse index)
index.add_with_ids(data.gallery, data.gallery_labels)
print(index, f"{index.bytes_per_entry:.0f} bytes per entry")

# %% 3. 1:N identification: (scores, ids), best first.
D, I = index.search(data.probes, 5, k_factor=20, efSearch=128)
mated = data.probe_labels >= 0
print("rank-1 on mated probes:", np.mean(I[mated, 0] == data.probe_labels[mated]))
_, I_exact = index.search_exhaustive(data.probes, 5)
print("top-1 agreement with exhaustive search:", np.mean(I[:, 0] == I_exact[:, 0]))

# %% 4. 1:1 verification and a threshold from the score distributions.
claimed = data.probe_labels[mated]
genuine = index.verify(data.probes[mated], claimed)
impostor = index.verify(data.probes[mated], (claimed + 1) % 2000)
eer, threshold = pslerp.equal_error_rate(genuine, impostor)
print(f"verification EER {eer:.3f} at threshold {threshold:.3f}")
print(f"accepted at that threshold: genuine {np.mean(genuine >= threshold):.3f}, "
      f"impostor {np.mean(impostor >= threshold):.3f}")
print("one probe, one claim:", index.verify(data.probes[0], int(claimed[0])))

# %% 5. De-duplication: a batch with two re-enrolments of known people, one new person
# twice, and one new person once. enroll=True adds one entry per new identity.
x_new, _ = pslerp.synth(2, 2, groups=8, group_dim=16, seed=99)  # 2 unseen people, 2 samples each
batch = np.concatenate([data.gallery[:2], x_new[:1], x_new[:1], x_new[2:3]])
res = index.deduplicate(batch, threshold=0.99, enroll=True,
                        ids=np.arange(10_000, 10_000 + len(batch), dtype=np.int64))
print(res)
print("already enrolled:", [e[0][0] if e else None for e in res.existing])
print("new identities enrolled as", res.enrolled_ids.tolist(), "- index now holds", index.ntotal)

# %% 6. Save and load (one checksummed file; pickling works too) and check the answers.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "gallery.pslerp")
    pslerp.write_index(index, path)
    loaded = pslerp.read_index(path)
    print("file size", os.path.getsize(path), "bytes; loaded", loaded)
    D2, I2 = loaded.search(data.probes, 5, k_factor=20, efSearch=128)
    assert np.array_equal(I2, index.search(data.probes, 5, k_factor=20, efSearch=128)[1])
    print("the loaded index answers as the saved one did")

# %% 7. The scheme on its own: protect features with explicit keys and masks and match
# raw probes against the protected templates.
p = pslerp.Params(8, 16, t=0.7)
templates, keys, masks, weights = pslerp.protect(data.gallery[:3], p)
print("mated scores", pslerp.match(data.probes[:3], templates, keys, masks, p, weights))
