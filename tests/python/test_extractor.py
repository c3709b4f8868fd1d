"""pslerp.Extractor from Python: the golden face-api descriptors, image formats and bad inputs.

Skips (with the reason) where the extractor is not built, the face model has not been fetched
(scripts/fetch_model.sh) or ../shared/data is absent.
"""
import json
import os
import pathlib
import struct

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
    with pytest.raises(ValueError, match=r"garbage\.png: unreadable: unrecognised image format"):
        ex.extract_file(bad)


def _pattern(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 37 + y * 11) % 256, 255 - (x * 5 + y * 23) % 256, (x * y * 3) % 256],
                    axis=2).astype(np.uint8)


def _ppm(img):
    h, w, _ = img.shape
    return b"P6\n# written by hand\n%d %d\n255\n" % (w, h) + img.tobytes()


def _bmp(img):
    """24-bit bottom-up BMP with a 40-byte header, rows padded to 4 bytes."""
    h, w, _ = img.shape
    stride = (w * 3 + 3) // 4 * 4
    rows = b"".join(img[r, :, ::-1].tobytes().ljust(stride, b"\0") for r in range(h - 1, -1, -1))
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(rows), 0, 0, 14 + 40) + info + rows


def test_formats_are_told_by_their_bytes(tmp_path):
    """PPM, BMP and (a phone's) WebP named .jpg give the descriptor of the same pixels."""
    ex = _extractor(aligned=True)
    img = _pattern()
    want = ex.embed_chips([img])[0]
    files = {"a.ppm": _ppm(img), "b.bmp": _bmp(img), "c.jpeg": _ppm(img)}  # a PPM named .jpeg
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [tmp_path / n for n in files]
    try:
        from PIL import Image, features
        if features.check("webp"):
            Image.fromarray(img).save(tmp_path / "phone.jpg", format="WEBP", lossless=True)
            paths.append(tmp_path / "phone.jpg")
    except ImportError:
        pass
    for r in ex.extract_files(paths):
        assert r.ok, f"{r.path}: {r.outcome}: {r.message}"
        np.testing.assert_allclose(r.raw, want, atol=1e-4, err_msg=r.path)


def test_unreadable_images_say_why(tmp_path):
    ex = _extractor(aligned=True)
    cases = {
        "short.ppm": (_ppm(_pattern())[:-100], "truncated"),
        "anim.gif": (b"GIF89a" + bytes(20), "GIF is not supported"),
        "notes.jpg": (b"hello, not an image", "unrecognised image format"),
        "huge.pgm": (b"P5 100000 100000 255\n\0", "over the limit"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    results = ex.extract_files([tmp_path / n for n in cases])
    for (name, (_, why)), r in zip(cases.items(), results):
        assert r.outcome == "unreadable", f"{name}: {r.outcome}"
        assert why in r.message, f"{name}: {r.message}"
    assert "WebP" in results[1].message  # the supported formats are listed
    with pytest.raises(ValueError, match="short.ppm.*truncated"):
        ex.extract_file(tmp_path / "short.ppm")


def test_thread_and_detection_options_are_checked():
    for kw in ({"detect_max_side": 100}, {"detect_max_side": -1}, {"torch_threads": -1}, {"num_threads": -2}):
        with pytest.raises(ValueError, match="detect_max_side|torch_threads"):
            _extractor(**kw)
    ex = _extractor(detect_max_side=0, torch_threads=1, num_threads=1)
    assert ex.dim == 128

