"""pslerp.Extractor from Python: the golden face-api descriptors and bad inputs.

Skips (with the reason) where the extractor is not built, the face model has not been fetched
(scripts/fetch_model.sh) or ../shared/data is absent.
"""
import json
import os
import pathlib

import numpy as np
import pytest

import pslerp

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT.parent / "shared" / "data" / "faces" / "faceapi-golden"
MODEL_DIR = pathlib.Path(os.environ.get("PSLERP_MODEL_DIR", ROOT / "models"))


def _extractor(**kw):
    if not hasattr(pslerp, "Extractor"):
        pytest.skip("pslerp was built without the extractor (LibTorch/dlib missing)")
    if not (MODEL_DIR / "face_recognition_model.bin").exists():
        pytest.skip(f"face model not found in {MODEL_DIR}: run scripts/fetch_model.sh")
    return pslerp.Extractor(model_dir=str(MODEL_DIR), **kw)


def test_golden_descriptors_match_face_api():
    if not GOLDEN.is_dir():
        pytest.skip(f"{GOLDEN} absent: shared test data not available")
    ex = _extractor(aligned=True)
    pairs = [("face1.png", "faceDescriptor1.json"), ("face2.png", "faceDescriptor2.json"),
             ("face_rectangular.png", "faceDescriptorRect.json")]
    results = ex.extract_files([GOLDEN / img for img, _ in pairs])
    for (img, ref), r in zip(pairs, results):
        assert r.ok, f"{img}: {r.message}"
        want = np.asarray(json.loads((GOLDEN / ref).read_text()), dtype=np.float32)
        dist = float(np.linalg.norm(r.raw - want))
        assert dist < 0.06, f"{img}: {dist:.4f} from face-api's descriptor"
        groups = r.features.reshape(ex.groups, ex.group_dim)
        np.testing.assert_allclose(np.linalg.norm(groups, axis=1), 1.0, rtol=1e-5)


def test_unreadable_file_is_an_outcome_not_a_crash(tmp_path):
    ex = _extractor(aligned=True)
    bad = tmp_path / "garbage.png"
    bad.write_bytes(b"\x89PNG not really")
    (r,) = ex.extract_files([bad])
    assert not r.ok and r.outcome != "ok"
    with pytest.raises((ValueError, RuntimeError)):
        ex.extract_file(bad)
