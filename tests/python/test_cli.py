"""Tests of the `pslerp` command line: every subcommand (synth, enroll, search, verify, dedup, info,
bench, demo and, when built, extract) on tiny synthetic data, on the happy path and on bad input
(exit codes and messages), and the CLI's outputs against the Python API on the same index files.

Runs the built binary: $PSLERP_CLI, else tools/pslerp under the current folder (pytest runs from
the build folder: cd build && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python),
else build/tools/pslerp of this checkout. Skips when none exists. The comparisons with the Python
API import `pslerp` (PYTHONPATH=python) and skip when it is not importable. The extract cases
run only when the binary lists `extract` (built with the extractor); those reading photos skip
with the reason when ../shared/data/faces or the face model ($PSLERP_MODEL_DIR, else models/)
is absent.

Exit codes under test (pslerp --help): 0 success, 1 the run failed, 2 usage error (nothing was
written), 3 partial success (some items failed, each reported on stderr).

Starting the binary costs about a second of CPU (it links LibTorch when the extractor is built),
so every command runs once, concurrently, in module fixtures: `ctx` makes the data (one synth,
one enrolment per index kind), `results` runs every case of CASES; the tests then check what each
one returned and wrote.
"""

import concurrent.futures
import csv
import os
import pathlib
import shutil
import subprocess
import types
import warnings

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FACES = ROOT.parent / "shared" / "data" / "faces" / "dlib-johns"
MODEL_DIR = pathlib.Path(os.environ.get("PSLERP_MODEL_DIR", ROOT / "models"))


def _find_cli():
    env = os.environ.get("PSLERP_CLI")
    if env:
        return pathlib.Path(env)
    for candidate in (pathlib.Path.cwd() / "tools" / "pslerp", ROOT / "build" / "tools" / "pslerp"):
        if candidate.is_file():
            return candidate
    return None


CLI = _find_cli()
pytestmark = pytest.mark.skipif(CLI is None or not CLI.is_file(),
                                reason="the pslerp binary is not built (or set PSLERP_CLI)")

OK, FAILED, USAGE, PARTIAL = 0, 1, 2, 3
GALLERY, MATED, NONMATED, TRAIN = 400, 40, 40, 640
NPROBES = MATED + NONMATED
K = 5
NLIST = 16
# The fixture's galleries score in cosine units at t = 0.7 (no score normalisation), so that
# fixed thresholds split mated and non-mated pairs and a copy scores 1 against its own entry;
# the default scheme (t = 0.9, cohort z-scores) is driven through the CLI in
# test_default_scheme_through_the_cli.
FLAT_FACTORY = "PSlerp8x16(t=0.7,norm=none)"
IVF_FACTORY = f"IVF{NLIST},PSlerp8x16(t=0.7,norm=none)"
HUGE = "4611686018427387904"  # 2^62: n * k * 4 bytes wraps a 64-bit size to 0
TOL = 1e-5                   # scores: CLI against Python
TIMEOUT = 180                # one command; a hang (a FIFO opened blocking) fails instead of waiting
COMMANDS = ("synth", "enroll", "search", "verify", "dedup", "info", "bench", "demo", "keygen", "rekey")
HELP_COMMANDS = ("search", "verify")  # --help of a few (each start costs a second)
# Two identities, two photos and one, for the extract happy path (dlib-johns/<identity>/*.jpg).
FACE_IDENTITIES = ("John_Salley", "John_Savage")

FLAT, IVF = "{d}/flat.pslerp", "{d}/ivf.pslerp"
NONMATED_IN_BATCH = 10  # batch.npy: 6 gallery copies, 4 mated probes, then 4 non-mated ones, 3 near copies
PROBES, MATED_X, CLAIMED = "{d}/probes.npy", "{d}/mated.npy", "{d}/claimed.npy"


class Case(types.SimpleNamespace):
    """One command line: its arguments ({d}: the data folder, {m}: the model folder), the exit code
    and the fragments of stderr expected ({d} and {m} also replaced), and what it needs beyond the
    binary: None, "extract" (the extract command) or "faces" (also the photos and the face model)."""


SECRET_ENV = "PSLERP_TEST_SECRET"  # run() sets it to SECRET's 64 hex digits
SECRET = bytes(range(1, 33))
INDEX_COMMANDS = ("enroll", "search", "verify", "dedup", "info")


def case(args, code, *fragments, needs=None, secret=True):
    """The galleries are sealed: a command that reads or writes index files gets --secret-env
    (right after the command name) unless it says --unsealed, names a secret itself or secret=False."""
    if secret and args[0] in INDEX_COMMANDS and "--unsealed" not in args and not any("secret" in a for a in args):
        args = [args[0], "--secret-env", SECRET_ENV, *args[1:]]
    return Case(args=args, code=code, fragments=fragments, needs=needs)


CASES = {
    # ------------------------------------------------------------ happy path, each command
    "help": case(["--help"], OK),
    **{f"{c} help": case([c, "-h" if c == "verify" else "--help"], OK) for c in HELP_COMMANDS},
    "extract help": case(["extract", "--help"], OK, needs="extract"),
    "info flat": case(["info", FLAT], OK),
    "info ivf": case(["info", IVF, "--threads=2"], OK),
    "keygen": case(["keygen", "--out", "{d}/out/key"], OK),
    "keygen exists": case(["keygen", "--out", "{d}/keep.pslerp"], FAILED, "exists; refusing to overwrite a secret"),
    "rekey": case(["rekey", "--index", "{d}/rekey.pslerp", "--secret-env", SECRET_ENV, "--new-secret-file",
                   "{d}/key2"], OK),
    "rekey clear": case(["rekey", "--index", "{d}/rekey_clear.pslerp", "--unsealed-in", "--new-secret-env", SECRET_ENV],
                        OK),
    "rekey no old secret": case(["rekey", "--index", "{d}/keep.pslerp", "--new-secret-env", SECRET_ENV], USAGE,
                                "give the old secret"),
    "rekey wrong secret": case(["rekey", "--index", "{d}/keep.pslerp", "--secret-file", "{d}/key2",
                                "--new-secret-file", "{d}/key2"], FAILED, "wrong secret or file modified"),
    "search without secret": case(["search", "--index", FLAT, PROBES, "--secret-env", "PSLERP_NO_SUCH_VARIABLE"],
                                  FAILED, "environment variable PSLERP_NO_SUCH_VARIABLE is not set"),
    "search wrong secret": case(["search", "--index", FLAT, PROBES, "--secret-file", "{d}/key2"], FAILED,
                                "wrong secret or file modified"),
    "search loose secret file": case(["search", "--index", FLAT, PROBES, "--secret-file", "{d}/key_loose"], FAILED,
                                     "must not be readable or writable by group or others"),
    "enroll no secret": case(["enroll", "{d}/gallery.npy", "--out", "{d}/never.pslerp"], USAGE,
                             "writing an index file needs its secret", secret=False),
    "enroll secret and unsealed": case(["enroll", "{d}/gallery.npy", "--out", "{d}/never.pslerp", "--unsealed",
                                        "--secret-env", SECRET_ENV], USAGE, "or --unsealed, not both"),
    "enroll fvecs": case(["enroll", "{d}/fv/gallery.fvecs", "--ids", "{d}/fv/gallery_labels.ivecs", "--train",
                          "{d}/fv/train.fvecs", "--seed", "5", "--batch", "7", "-o", "{d}/out/fvecs.pslerp",
                          "--factory", FLAT_FACTORY, "--unsealed"], OK),
    "enroll ivf on enrolled": case(["enroll", "{d}/gallery.npy", "--factory", "IVF8,PSlerp8x16", "--train-on-enrolled",
                                    "--out", "{d}/out/on_enrolled.pslerp"],
                                   OK, "WARNING the IVF was trained on the enrolled features"),
    "search flat": case(["search", "--index", FLAT, PROBES, "-k", str(K), "-t", "2", "--labels", "{d}/probe_labels.npy",
                         "-o", "{d}/out/flat"], OK),
    "search ivf": case(["search", "--index", IVF, PROBES, f"--k={K}", "--threads", "1", "--nprobe", str(NLIST),
                        "--labels={d}/probe_labels.npy", "--out", "{d}/out/ivf"], OK),
    "search ivf nprobe": case(["search", "--index", IVF, PROBES, f"-k{K}", "--nprobe=3", "-o", "{d}/out/ivf3"], OK),
    "search k beyond entries": case(["search", "--index", FLAT, PROBES, f"-k{GALLERY + 10}", "-t2",
                                     "--out", "{d}/out/pad"], OK),
    "verify": case(["verify", "--index", FLAT, MATED_X, "--ids", CLAIMED, "--threshold", "0.9",
                    "--out", "{d}/out/verify.npy"], OK),
    "dedup": case(["dedup", "--index", IVF, "{d}/batch.npy", "--threshold", "0.95", "--nprobe", "4",
                   "--report", "{d}/out/report.csv", "--enroll", "--save", "{d}/out/dedup.pslerp"], OK),
    "dedup flat": case(["dedup", "--index", FLAT, "{d}/batch.npy", "--threshold=0.85",
                        "--report", "{d}/out/report_flat.csv"], OK),
    "bench": case(["bench", "-n", "300", "--queries", "8", "--repeats", "1", "--train", "400", "-k", "5",
                   "--factory", "IVF8,PSlerp8x16", "-t", "1"], OK),
    "demo": case(["demo", "--gallery", "300", "--mated", "20", "--nonmated", "100", "--train", "800",
                  "--impostors", "2", "--nlist", "8"], OK),
    "extract": case(["extract", "{d}/faces", "-o", "{d}/out/faces.npy", "--labels", "{d}/out/faces.tsv",
                     "--model-dir", "{m}", "-t", "2"],
                    OK, "pslerp extract: skipped {d}/faces/John_Savage/broken.jpg: unreadable", needs="faces"),
    # ------------------------------------------------------------ partial success: each failed item reported
    "verify unknown ids ivf": case(["verify", "--index", IVF, MATED_X, "--ids", "{d}/claimed_unknown.npy",
                                    "--threshold", "0.9", "--out", "{d}/out/unknown.npy"],
                                   PARTIAL, "pslerp verify: item 3: unknown id 999999",
                                   "pslerp verify: item 17: unknown id -5", "2 of 40 items"),
    "verify unknown id and nan probe": case(["verify", "--index", FLAT, "{d}/mated_nan.npy", "--ids",
                                             "{d}/claimed_unknown.npy", "--threshold", "0.3"],
                                            PARTIAL, "item 2: ", "item 3: unknown id 999999", "3 of 40 items"),
    # ------------------------------------------------------------ numbers out of range or malformed
    "search k 2^62": case(["search", "--index", FLAT, PROBES, "-k", HUGE], USAGE, f"option -k: {HUGE} is out of range"),
    "search k beyond int64": case(["search", "--index", FLAT, PROBES, "--k=99999999999999999999"],
                                  USAGE, "option --k: 99999999999999999999 is out of range"),
    "search k 1abc": case(["search", "--index", FLAT, PROBES, "-k", "1abc"], USAGE, "expected an integer, got '1abc'"),
    "nprobe huge": case(["search", "--index", IVF, PROBES, "--nprobe", HUGE], USAGE,
                        f"--nprobe {HUGE} exceeds the index's 16 lists"),
    "synth gallery 2^62": case(["synth", "--out", "{d}/never", "--gallery", HUGE],
                               USAGE, f"option --gallery: {HUGE} is out of range"),
    "synth noise nan": case(["synth", "--out", "{d}/never", "--noise", "nan"],
                            USAGE, "option --noise: expected a number, got 'nan'"),
    "synth fraction": case(["synth", "--out", "{d}/never", "--noisy-fraction", "1.5"],
                           USAGE, "option --noisy-fraction", "out of range"),
    "synth beyond memory": case(["synth", "--out", "{d}/never", "--gallery", str(2 ** 40)], FAILED, "memory"),
    "bench results overflow": case(["bench", "--n", "10", "--queries", str(2 ** 40), "-k", str(2 ** 20)],
                                   FAILED, "queries x k results", "overflows"),
    "bench n 0": case(["bench", "-n", "0"], USAGE, "option -n: 0 is out of range"),
    "demo nprobe beyond nlist": case(["demo", "--gallery", "100", "--nlist", "8", "--nprobe", "9"],
                                     USAGE, "--nprobe 9 exceeds the 8 lists"),
    "demo impostors": case(["demo", "--impostors", str(2 ** 40)], USAGE, "option --impostors"),
    "enroll batch 0": case(["enroll", "{d}/gallery.npy", "--out", "{d}/never.pslerp", "--batch", "0"],
                           USAGE, "option --batch: 0 is out of range"),
    "threads 1abc": case(["info", FLAT, "--threads", "1abc"],
                         USAGE, "option --threads: expected an integer, got '1abc'"),
    "threads huge": case(["info", FLAT, "-t", "99999999"], USAGE, "option -t: 99999999 is out of range"),
    "threshold inf": case(["verify", "--index", FLAT, MATED_X, "--ids", CLAIMED, "--threshold=inf"],
                          USAGE, "option --threshold"),
    "threshold abc": case(["verify", "--index", FLAT, MATED_X, "--ids", CLAIMED, "--threshold", "abc"],
                          USAGE, "option --threshold: expected a number, got 'abc'"),
    # ------------------------------------------------------------ the command line itself
    "repeated": case(["search", "--index", FLAT, PROBES, "-k", "3", "--k", "4"], USAGE, "given twice"),
    "synth repeated": case(["synth", "--out", "{d}/never", "--seed", "1", "--seed=2"],
                           USAGE, "option --seed given twice"),
    "unknown option": case(["search", "--index", FLAT, PROBES, "--bogus", "1"], USAGE, "unknown option(s): --bogus"),
    "info unknown last": case(["info", FLAT, "--bogus"], USAGE, "unknown option(s): --bogus"),
    "search value missing last": case(["search", "--index", FLAT, PROBES, "-k"], USAGE, "option -k needs a value"),
    "unknown short": case(["info", FLAT, "-z"], USAGE, "unknown option -z"),
    "flag value": case(["search", "--index", FLAT, PROBES, "--aligned=yes"], USAGE, "--aligned takes no value"),
    "missing value": case(["search", "--index", FLAT, PROBES, "--labels", "--aligned"],
                          USAGE, "--labels needs a value"),
    "missing required": case(["verify", "--index", FLAT, MATED_X, "--ids", CLAIMED],
                             USAGE, "missing required option --threshold"),
    "verify missing ids": case(["verify", "--index", FLAT, MATED_X, "--threshold", "0.3"],
                               USAGE, "missing required option --ids"),
    "search missing index": case(["search", PROBES], USAGE, "missing required option --index"),
    "dedup missing threshold": case(["dedup", "--index", FLAT, "{d}/batch.npy"],
                                    USAGE, "missing required option --threshold"),
    "enroll missing out": case(["enroll", "{d}/gallery.npy"], USAGE, "missing required option --out"),
    "synth missing out": case(["synth", "--gallery", "10"], USAGE, "missing required option --out"),
    "no positional": case(["info"], USAGE, "expected one index file"),
    "synth positional": case(["synth", "--out", "{d}/never", "extra"], USAGE, "synth takes no positional arguments"),
    "synth format": case(["synth", "--out", "{d}/never", "--format", "csv"],
                         USAGE, "--format must be npy or fvecs, got 'csv'"),
    "unknown command": case(["serch"], USAGE, "unknown command 'serch'"),
    "option first": case(["--threads", "2", "info"], USAGE, "the command comes first"),
    "nprobe exhaustive": case(["dedup", "--index", FLAT, "{d}/batch.npy", "--threshold", "0.9", "--nprobe", "4"],
                              USAGE, "--nprobe applies to an IVF index only"),
    "dedup save without enroll": case(["dedup", "--index", FLAT, "{d}/batch.npy", "--threshold", "0.9",
                                       "--save", "{d}/never.pslerp"],
                                      USAGE, "--ids and --save apply with --enroll only"),
    "bad factory": case(["enroll", "{d}/gallery.npy", "--out", "{d}/never.pslerp", "--factory", "PSlerp9x99"],
                        USAGE, "PSlerp9x99"),
    "bench bad factory": case(["bench", "-n", "100", "--factory", "Foo"], USAGE, "factory string 'Foo'"),
    "enroll ivf untrained": case(["enroll", "{d}/gallery.npy", "--factory", f"IVF{NLIST},PSlerp8x16",
                                  "--out", "{d}/never.pslerp"], USAGE, "an IVF index needs training", "--train FILE"),
    "enroll train and no-train": case(["enroll", "{d}/gallery.npy", "--train", "{d}/train.npy", "--no-train",
                                       "--out", "{d}/never.pslerp"],
                                      USAGE, "give at most one of --train, --train-on-enrolled, --no-train"),
    "enroll labels alone": case(["enroll", "{d}/gallery.npy", "--labels", "{d}/gallery_labels.npy",
                                 "--out", "{d}/never.pslerp"], USAGE, "--labels applies with --learn-importance only"),
    # ------------------------------------------------------------ retired options name their replacement
    "ef-search": case(["search", "--index", IVF, PROBES, "--ef-search", "2147483647"],
                      USAGE, "--ef-search belonged to the retired coarse stage", "--nprobe"),
    "k-factor": case(["search", "--index", IVF, PROBES, "--k-factor=4294967297"],
                     USAGE, "--k-factor belonged to the retired coarse stage", "--nprobe"),
    "range-shortlist": case(["dedup", "--index", IVF, "{d}/batch.npy", "--threshold", "0.9", "--range-shortlist", "5"],
                            USAGE, "--range-shortlist belonged to the retired coarse stage", "--nprobe"),
    "embedding": case(["enroll", "{d}/gallery.npy", "--out", "{d}/never.pslerp", "--embedding", "pca"],
                      USAGE, "--embedding belonged to the retired coarse stage", "IVF1024,PSlerp8x16"),
    # ------------------------------------------------------------ runtime errors: the culprit named
    "missing file": case(["search", "--index", FLAT, "{d}/nothing.npy"], FAILED, "{d}/nothing.npy: no such file"),
    "enroll missing input": case(["enroll", "{d}/nothing.npy", "--out", "{d}/never.pslerp"],
                                 FAILED, "{d}/nothing.npy: no such file"),
    "info missing file": case(["info", "{d}/nothing.pslerp"], FAILED,
                              "cannot open index file '{d}/nothing.pslerp': no such file"),
    "corrupt index": case(["info", "{d}/cut.pslerp"], FAILED, "index file '{d}/cut.pslerp': truncated sealed file"),
    "empty index": case(["info", "{d}/empty.pslerp"], FAILED, "index file '{d}/empty.pslerp': truncated index file"),
    "garbage index": case(["info", "{d}/garbage.pslerp"], FAILED,
                          "index file '{d}/garbage.pslerp': not a pslerp index file"),
    "flipped index": case(["search", "--index", "{d}/flip.pslerp", PROBES], FAILED,
                          "index file '{d}/flip.pslerp': cannot open the sealed file: wrong secret or file modified"),
    "dedup flipped index": case(["dedup", "--index", "{d}/flip.pslerp", "{d}/batch.npy", "--threshold", "0.9",
                                 "--enroll", "--save", "{d}/never.pslerp"], FAILED,
                                "'{d}/flip.pslerp': cannot open the sealed file: wrong secret or file modified"),
    "fifo index": case(["search", "--index", "{d}/fifo.pslerp", PROBES], FAILED,
                       "cannot open index file '{d}/fifo.pslerp': not a regular file"),
    "folder index": case(["info", "{d}/folder"], FAILED, "cannot open index file '{d}/folder': not a regular file"),
    "fifo probes": case(["search", "--index", FLAT, "{d}/fifo.npy"], FAILED, "{d}/fifo.npy: not a regular file"),
    "folder ids": case(["verify", "--index", FLAT, MATED_X, "--ids", "{d}/folder.npy", "--threshold", "0.3"],
                       FAILED, "{d}/folder.npy: not a regular file"),
    "truncated probes": case(["search", "--index", FLAT, "{d}/cut.npy"], FAILED, "{d}/cut.npy: truncated"),
    "float64 probes": case(["search", "--index", FLAT, "{d}/f64.npy", "-o", "{d}/out/f64"], OK),  # converted
    "int32 ids": case(["enroll", "{d}/gallery.npy", "--ids", "{d}/ids32.npy", "--no-train", "--out",
                       "{d}/out/ids32.pslerp"], OK),  # widened
    "search ids target a folder": case(["search", "--index", FLAT, PROBES, "-o", "{d}/folder_pair"], FAILED,
                                       "{d}/folder_pair_ids.npy: is a folder"),
    "synth out is a file": case(["synth", "--out", "{d}/gallery.npy", "--gallery", "10"], FAILED,
                                "cannot create {d}/gallery.npy"),
    "duplicate ids": case(["enroll", "{d}/gallery.npy", "--ids", "{d}/dup_ids.npy", "--no-train",
                           "--out", "{d}/keep.pslerp"], FAILED, "id 4 appears twice"),
    "enroll train dimension": case(["enroll", "{d}/gallery.npy", "--train", "{d}/dim64.npy",
                                    "--out", "{d}/keep.pslerp"], FAILED, "--train features have dimension 64"),
    "enroll ids count": case(["enroll", "{d}/gallery.npy", "--ids", CLAIMED, "--no-train", "--out",
                              "{d}/never.pslerp"], FAILED, f"{{d}}/claimed.npy: {MATED} ids for {GALLERY} features"),
    "nan probe search": case(["search", "--index", IVF, "{d}/mated_nan.npy"], FAILED,
                             "vector 2 has a NaN or infinite value"),
    "dimension mismatch": case(["search", "--index", FLAT, "{d}/dim64.npy", "-o", "{d}/keep"], FAILED,
                               "probes have dimension 64, the index 128"),
    "search usage keeps outputs": case(["search", "--index", FLAT, PROBES, "-k", "0", "-o", "{d}/keep"],
                                       USAGE, "option -k"),
    "verify dimension": case(["verify", "--index", FLAT, "{d}/dim64.npy", "--ids", "{d}/ids2.npy", "--threshold",
                              "0.3", "--out", "{d}/keep_verify.npy"],
                             FAILED, "probes have dimension 64, the index 128"),
    "ids count": case(["verify", "--index", FLAT, PROBES, "--ids", CLAIMED, "--threshold", "0.3",
                       "--out", "{d}/keep_verify.npy"],
                      FAILED, f"{{d}}/claimed.npy: {MATED} ids for {NPROBES} features"),
    "dedup dimension keeps index": case(["dedup", "--index", "{d}/keep_dedup.pslerp", "{d}/dim64.npy",
                                         "--threshold", "0.9", "--enroll"],
                                        FAILED, "batch has dimension 64, the index 128"),
    # ------------------------------------------------------------ extract (built with the extractor)
    "extract missing out": case(["extract", "{d}/badfaces"], USAGE, "missing required option --out", needs="extract"),
    "extract mean": case(["extract", "{d}/badfaces", "-o", "{d}/never.npy", "--mean", "1,2"],
                         USAGE, "--mean expects three comma-separated numbers, got '1,2'", needs="extract"),
    "extract missing folder": case(["extract", "{d}/nothing", "-o", "{d}/never.npy", "--model-dir", "{m}"],
                                   FAILED, "no such file or folder: {d}/nothing", needs="extract"),
    "extract empty folder": case(["extract", "{d}/folder", "-o", "{d}/never.npy", "--model-dir", "{m}"],
                                 FAILED, "no images", "under {d}/folder", needs="extract"),
    "extract missing model": case(["extract", "{d}/badfaces", "-o", "{d}/never.npy", "--model-dir", "{d}/folder"],
                                  FAILED, "{d}/folder/", "fetch_model.sh", needs="extract"),
    "extract strict unreadable": case(["extract", "{d}/badfaces", "-o", "{d}/never.npy", "--strict",
                                       "--model-dir", "{m}"], FAILED,
                                      "skipped {d}/badfaces/x/garbage.jpg: unreadable",
                                      "1 of 1 images have no usable face", "nothing written", needs="faces"),
}


def run(*args):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PSLERP_PROGRESS="0", **{SECRET_ENV: SECRET.hex()})
    try:
        return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, None, e.stdout or "", f"TIMED OUT after {TIMEOUT} s (hung?)")


def expect(result, code, fragments=()):
    """Checks the exit code, that stderr holds each fragment and no source location."""
    assert result.returncode == code, (
        f"exit {result.returncode}, expected {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in stderr:\n{result.stderr}"
    assert "Error in " not in result.stderr, result.stderr
    for ext in (".cpp:", ".h:", ".hpp:"):
        assert ext not in result.stderr, result.stderr
    return result


def fill(text, d):
    return text.replace("{d}", str(d)).replace("{m}", str(MODEL_DIR))


# ----------------------------------------------------------------------------- fixtures


def _faces_reason(has_extract):
    if not has_extract:
        return "the pslerp binary was built without the extractor (no extract command)"
    if not all((FACES / who).is_dir() for who in FACE_IDENTITIES):
        return f"{FACES} absent: shared test photos not available"
    if not (MODEL_DIR / "face_recognition_model.bin").is_file():
        return f"face model not found in {MODEL_DIR}: run scripts/fetch_model.sh"
    return None



@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A synthetic gallery, probes and training features (written twice: .npy and .fvecs), enrolled
    as an exhaustive and an IVF index (seeded, trained on training features of other identities),
    and the inputs of CASES: derived arrays, broken files, FIFOs, files that failed commands must
    leave untouched, and (when available) a folder of photos."""
    d = tmp_path_factory.mktemp("cli")
    (d / "out").mkdir()
    synth = ["--gallery", GALLERY, "--mated", MATED, "--nonmated", NONMATED, "--train", TRAIN, "--seed", 7]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        first = [pool.submit(run, "synth", "--out", d, *synth),
                 pool.submit(run, "synth", "--out", d / "fv", "--format", "fvecs", *synth),
                 pool.submit(run, "--help")]
        for r in first[:2]:
            assert "synth: 400 gallery, 40 mated + 40 non-mated probes, 640 training" in expect(r.result(), OK).stdout
        help_result = expect(first[2].result(), OK)
        # Sealed galleries (with secret frames) for the cases, clear ones for byte comparisons.
        enrolments = [pool.submit(run, "enroll", d / "gallery.npy", "--ids", d / "gallery_labels.npy",
                                  "--factory", factory, "--train", d / "train.npy", "--out", d / f"{name}.pslerp",
                                  "--seed", 5, *sealing)
                      for name, factory in (("flat", FLAT_FACTORY), ("ivf", IVF_FACTORY))
                      for name, sealing in ((name, ("--secret-env", SECRET_ENV)), (name + "_clear", ("--unsealed",)))]
        for r in enrolments:
            assert f"enrolled {GALLERY} entries" in expect(r.result(), OK).stdout

    gallery = np.load(d / "gallery.npy")
    probes = np.load(d / "probes.npy")
    claimed = np.load(d / "probe_labels.npy")[:MATED]
    np.save(d / "mated.npy", probes[:MATED])
    np.save(d / "claimed.npy", claimed)
    unknown = claimed.copy()
    unknown[3], unknown[17] = 999999, -5
    np.save(d / "claimed_unknown.npy", unknown)
    nan = probes[:MATED].copy()
    nan[2, 0] = np.nan
    np.save(d / "mated_nan.npy", nan)
    # Copies of gallery entries, mated and non-mated probes, near copies of two non-mated probes
    # and of a gallery entry: dedup finds gallery matches, clusters within the batch (one of them
    # also matching the gallery) and new items.
    near = np.concatenate([probes[MATED:MATED + 2], gallery[:1]])
    near += np.random.default_rng(3).normal(0, 1e-3, near.shape).astype(np.float32)
    np.save(d / "batch.npy", np.concatenate([gallery[:6], probes[:4], probes[MATED:MATED + 4], near]))
    dup = np.arange(GALLERY, dtype=np.int64)
    dup[5] = dup[4]
    np.save(d / "dup_ids.npy", dup)
    np.save(d / "dim64.npy", np.ones((2, 64), dtype=np.float32))
    np.save(d / "ids2.npy", np.arange(2, dtype=np.int64))
    np.save(d / "f64.npy", probes.astype(np.float64))
    np.save(d / "ids32.npy", np.arange(GALLERY, dtype=np.int32))
    blob = (d / "probes.npy").read_bytes()
    (d / "cut.npy").write_bytes(blob[: len(blob) // 2])
    blob = (d / "flat.pslerp").read_bytes()
    (d / "cut.pslerp").write_bytes(blob[: len(blob) // 2])
    (d / "empty.pslerp").write_bytes(b"")
    (d / "garbage.pslerp").write_bytes(b"not an index file " * 20)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    (d / "flip.pslerp").write_bytes(bytes(flipped))
    os.mkfifo(d / "fifo.pslerp")
    os.mkfifo(d / "fifo.npy")
    (d / "folder").mkdir()
    (d / "folder.npy").mkdir()
    (d / "folder_pair_ids.npy").mkdir()  # search -o folder_pair: the scores must not be written either
    # rekey: copies of the sealed and the clear gallery; a second secret (key2), one readable by others.
    shutil.copyfile(d / "flat.pslerp", d / "rekey.pslerp")
    shutil.copyfile(d / "flat_clear.pslerp", d / "rekey_clear.pslerp")
    (d / "key2").write_text(bytes(range(101, 133)).hex() + "\n")
    (d / "key2").chmod(0o600)
    (d / "key_loose").write_text(SECRET.hex() + "\n")
    (d / "key_loose").chmod(0o644)
    # Outputs that failed commands must leave as they are.
    shutil.copyfile(d / "flat.pslerp", d / "keep.pslerp")
    shutil.copyfile(d / "ivf.pslerp", d / "keep_dedup.pslerp")
    np.save(d / "keep_scores.npy", np.full((2, 3), 7, dtype=np.float32))
    np.save(d / "keep_ids.npy", np.full((2, 3), 7, dtype=np.int64))
    np.save(d / "keep_verify.npy", np.full(2, 7, dtype=np.float32))
    # extract: an unreadable file, alone and among photos of two identities.
    (d / "badfaces" / "x").mkdir(parents=True)
    (d / "badfaces" / "x" / "garbage.jpg").write_bytes(b"garbage, not a photo")
    has_extract = "\n  extract " in help_result.stdout
    faces_reason = _faces_reason(has_extract)
    if faces_reason is None:
        for who in FACE_IDENTITIES:
            (d / "faces" / who).mkdir(parents=True)
            for photo in sorted((FACES / who).glob("*.jpg"))[:2 if who == FACE_IDENTITIES[0] else 1]:
                shutil.copyfile(photo, d / "faces" / who / photo.name)
        (d / "faces" / "John_Savage" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return types.SimpleNamespace(d=d, help=help_result, has_extract=has_extract, faces_reason=faces_reason)


@pytest.fixture(scope="module")
def data(ctx):
    return ctx.d


def _skip_reason(ctx, name):
    needs = CASES[name].needs
    if needs == "extract" and not ctx.has_extract:
        return "the pslerp binary was built without the extractor (no extract command)"
    if needs == "faces":
        return ctx.faces_reason
    return None


@pytest.fixture(scope="module")
def results(ctx):
    """Every case of CASES that can run here, run concurrently (the slow ones first)."""
    names = [n for n in CASES if _skip_reason(ctx, n) is None and n != "help"]  # ctx ran --help
    names.sort(key=lambda n: not any(slow in n for slow in ("bench", "demo", "extract", "enroll")))

    def launch(name):
        return run(*[fill(a, ctx.d) for a in CASES[name].args])

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(launch, name) for name in names}
        return {"help": ctx.help, **{name: f.result() for name, f in futures.items()}}


def result_of(ctx, results, name):
    reason = _skip_reason(ctx, name)
    if reason:
        pytest.skip(reason)
    return results[name]


@pytest.fixture(scope="module")
def api():
    """The Python package, for comparing the CLI with it."""
    pslerp = pytest.importorskip("pslerp", reason="the pslerp Python package is not importable (PYTHONPATH=python)")
    return pslerp


# ----------------------------------------------------------------------------- every case


@pytest.mark.parametrize("name", list(CASES))
def test_exit_code_and_message(ctx, results, name):
    c = CASES[name]
    expect(result_of(ctx, results, name), c.code, [fill(f, ctx.d) for f in c.fragments])


def test_every_command_has_happy_and_failing_cases():
    """Each subcommand is run by at least one case that succeeds and one that fails."""
    for command in (*COMMANDS, "extract"):
        codes = {c.code for c in CASES.values() if c.args[0] == command}
        codes |= {OK} if command in ("synth", "enroll") else set()  # also run by the ctx fixture (synth, enroll)
        assert OK in codes and codes & {FAILED, USAGE}, (command, codes)


def test_messages_are_one_line(ctx, results):
    """A failed run prints one line, "pslerp <command>: <message>"."""
    for name, c in CASES.items():
        if c.code in (OK, PARTIAL) or _skip_reason(ctx, name) or name.startswith("extract"):
            continue  # extract also lists each skipped image; usage errors of the top level print the usage
        if c.args[0].startswith("-") or c.args[0] == "serch":
            continue
        lines = results[name].stderr.splitlines()
        lines = [l for l in lines if not l.startswith("pslerp: WARNING: set_seed")]
        assert len(lines) == 1 and lines[0].startswith(f"pslerp {c.args[0]}: "), (name, results[name].stderr)


# ----------------------------------------------------------------------------- what the happy path wrote


def test_help_lists_commands_and_exit_codes(ctx, results):
    text = ctx.help.stdout
    for command in COMMANDS:
        assert f"\n  {command} " in text
    assert "exit codes" in text and "3 partial" in text and "--name=value" in text
    for command in (*HELP_COMMANDS, "extract"):
        if command == "extract" and not ctx.has_extract:
            continue
        text = results[f"{command} help"].stdout
        assert text.startswith(f"usage: pslerp {command}"), text
        assert "exit codes" in text and "--threads" in text
        assert results[f"{command} help"].stderr == ""


def test_synth_writes_arrays(data):
    assert np.load(data / "gallery.npy").shape == (GALLERY, 128)
    labels = np.load(data / "probe_labels.npy")
    assert labels.shape == (NPROBES,) and (labels[:MATED] >= 0).all() and (labels[MATED:] == -1).all()
    assert np.load(data / "train.npy").shape == (TRAIN, 128)
    # .fvecs: per row an int32 dimension, then the floats; the same values as the .npy files
    fv = np.fromfile(data / "fv" / "gallery.fvecs", dtype=np.int32).reshape(GALLERY, 129)
    assert (fv[:, 0] == 128).all()
    np.testing.assert_array_equal(fv[:, 1:].view(np.float32), np.load(data / "gallery.npy"))
    iv = np.fromfile(data / "fv" / "probe_labels.ivecs", dtype=np.int32).reshape(NPROBES, 2)
    np.testing.assert_array_equal(iv[:, 1], labels)


def test_enroll_from_fvecs_in_batches_is_the_same_index(data, results):
    """Same features (.fvecs instead of .npy), ids, training and seed, added 7 at a time: the same file."""
    assert f"enrolled {GALLERY} entries" in results["enroll fvecs"].stdout
    assert (data / "out" / "fvecs.pslerp").read_bytes() == (data / "flat_clear.pslerp").read_bytes()


def test_sealed_files(data, results, api):
    """keygen writes a 0600 secret; info says a file is sealed without the secret; rekey re-seals in
    place (the old secret no longer opens it, the new one gives the same answers)."""
    key = data / "out" / "key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64
    r = expect(run("info", data / "flat.pslerp"), OK)
    assert "file         SEALED" in r.stdout and "need the secret" in r.stdout and "entries" not in r.stdout
    r = expect(run("info", data / "flat_clear.pslerp"), OK)
    assert "NOT SEALED" in r.stdout and "is not sealed" in r.stderr
    expect(run("search", "--index", data / "flat.pslerp", data / "probes.npy"), FAILED, ["no secret was given"])
    assert "re-sealed" in results["rekey"].stdout and "re-sealed" in results["rekey clear"].stdout
    new_secret = bytes(range(101, 133))
    with pytest.raises(RuntimeError, match="wrong secret or file modified"):
        api.read_index(str(data / "rekey.pslerp"), secret=SECRET)
    rekeyed = api.read_index(str(data / "rekey.pslerp"), secret=new_secret)
    original = api.read_index(str(data / "flat.pslerp"), secret=SECRET)
    assert api.has_secret_frame(rekeyed) and api.has_secret_frame(original)
    probes = np.load(data / "probes.npy")
    for a, b in zip(rekeyed.search(probes, K), original.search(probes, K)):
        np.testing.assert_array_equal(a, b)
    clear = api.read_index(str(data / "rekey_clear.pslerp"), secret=SECRET)
    assert clear.ntotal == GALLERY and not api.has_secret_frame(clear)


def test_info_both_kinds(results):
    flat, ivf = results["info flat"].stdout, results["info ivf"].stdout
    assert "exhaustive" in flat and f"entries      {GALLERY}" in flat
    assert f"nlist        {NLIST}" in ivf and f"entries      {GALLERY}" in ivf
    for text in (flat, ivf):
        assert "dimension    128 (8 groups x 16)" in text and "SEEDED" in text and "centring     mean" in text
        assert "file         SEALED" in text and "frame        secret" in text


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_search_writes_results(data, results, kind):
    assert f"searched {NPROBES} probes" in results[f"search {kind}"].stdout
    assert "rank-1 identification" in results[f"search {kind}"].stdout
    ids = np.load(data / "out" / f"{kind}_ids.npy")
    scores = np.load(data / "out" / f"{kind}_scores.npy")
    assert ids.shape == scores.shape == (NPROBES, K) and ids.dtype == np.int64 and scores.dtype == np.float32
    truth = np.load(data / "probe_labels.npy")[:MATED]
    assert (ids[:MATED, 0] == truth).mean() > 0.5  # chance: 1 / 400
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


def test_search_ivf_nprobe_is_reported(results):
    assert f"nprobe {NLIST} of {NLIST} lists, exact" in results["search ivf"].stdout
    assert f"nprobe 3 of {NLIST} lists" in results["search ivf nprobe"].stdout


def test_k_beyond_entries_pads(data):
    ids = np.load(data / "out" / "pad_ids.npy")
    scores = np.load(data / "out" / "pad_scores.npy")
    assert ids.shape == (NPROBES, GALLERY + 10)
    assert (ids[:, GALLERY:] == -1).all() and (ids[:, :GALLERY] >= 0).all()
    assert np.isneginf(scores[:, GALLERY:]).all()


def test_verify_scores(data, results):
    assert f"of {MATED} scored" in results["verify"].stdout
    assert np.isfinite(np.load(data / "out" / "verify.npy")).all()


def test_verify_unknown_ids_go_on(data, results):
    assert f"of {MATED - 2} scored" in results["verify unknown ids ivf"].stdout
    scores = np.load(data / "out" / "unknown.npy")
    assert np.isnan(scores[[3, 17]]).all()
    assert np.isfinite(np.delete(scores, [3, 17])).all()
    assert f"of {MATED - 3} scored" in results["verify unknown id and nan probe"].stdout
    # each failed item once, in order
    lines = [l for l in results["verify unknown ids ivf"].stderr.splitlines() if ": item " in l]
    assert [l.split(": item ")[1].split(":")[0] for l in lines] == ["3", "17"]


def test_dedup_report_and_enrolment(data, results):
    assert "match the gallery" in results["dedup"].stdout
    assert (data / "out" / "report.csv").read_text().startswith("item,cluster,gallery_id,score\n")
    assert (data / "out" / "dedup.pslerp").is_file()
    assert (data / "ivf.pslerp").read_bytes() == (data / "keep_dedup.pslerp").read_bytes()  # --save: INDEX as it was


def test_bench_and_demo(results):
    assert "ratio protected / FAISS IVF" in results["bench"].stdout
    assert "1:1 verification" in results["demo"].stdout and "protected IVF8" in results["demo"].stdout


def test_openmp_waits_passively_unless_told():
    """The CLI runs itself again with OMP_WAIT_POLICY=PASSIVE when the caller set no policy
    (util/threads.h wait_passively: spinning OpenMP and OpenBLAS threads slowed FAISS's batched
    search 5x at --threads 2), and leaves a policy the caller chose alone."""
    args = [str(CLI), "bench", "-n", "200", "--queries", "4", "--repeats", "1", "--train", "300", "-t", "2"]
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    base["PSLERP_PROGRESS"] = "0"
    unset = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=base)
    assert unset.returncode == 0, unset.stderr
    assert "(OMP_WAIT_POLICY PASSIVE)" in unset.stdout
    chosen = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=dict(base, OMP_WAIT_POLICY="active"))
    assert chosen.returncode == 0, chosen.stderr
    assert "(OMP_WAIT_POLICY active)" in chosen.stdout


def test_failed_runs_write_nothing(ctx, results):
    """Usage errors write nothing (pslerp --help promises it), nor do the runs failing here: every
    case that failed named its outputs never*, keep* (existing files) or the index it read."""
    d = ctx.d
    assert sorted(p.name for p in d.glob("never*")) == []
    assert not (d / "folder_pair_scores.npy").exists()
    assert (d / "keep.pslerp").read_bytes() == (d / "flat.pslerp").read_bytes()
    assert (d / "keep_dedup.pslerp").read_bytes() == (d / "ivf.pslerp").read_bytes()
    np.testing.assert_array_equal(np.load(d / "keep_scores.npy"), np.full((2, 3), 7, dtype=np.float32))
    np.testing.assert_array_equal(np.load(d / "keep_ids.npy"), np.full((2, 3), 7, dtype=np.int64))
    np.testing.assert_array_equal(np.load(d / "keep_verify.npy"), np.full(2, 7, dtype=np.float32))
    # no temporary file left beside an output (atomic writes)
    leftovers = [p.name for p in (*d.iterdir(), *(d / "out").iterdir()) if ".tmp" in p.name or p.name.startswith(".")]
    assert leftovers == []


# ----------------------------------------------------------------------------- the CLI against the Python API


def _load(api, path):
    index = api.read_index(str(path), secret=SECRET)
    assert index.ntotal == GALLERY
    return index


def assert_same_ranking(cli_ids, cli_scores, py_ids, py_scores, score_of=None):
    """Rows of ids (best first) and their scores: scores equal within TOL and ids equal, except
    that entries whose scores tie (within TOL) may come in either order; score_of(row, id), when
    given, rescores a CLI id that differs from Python's (it must score what the CLI said)."""
    cli_ids, py_ids = np.asarray(cli_ids), np.asarray(py_ids)
    cli_scores, py_scores = np.asarray(cli_scores, dtype=np.float64), np.asarray(py_scores, dtype=np.float64)
    assert cli_ids.shape == py_ids.shape == cli_scores.shape == py_scores.shape
    np.testing.assert_allclose(cli_scores, py_scores, rtol=0, atol=TOL)
    assert ((cli_ids < 0) == (py_ids < 0)).all()
    rows, cols = np.nonzero(cli_ids != py_ids)
    for r, c in zip(rows, cols):
        row = py_scores[r]
        neighbours = [row[j] for j in (c - 1, c + 1) if 0 <= j < len(row)]
        assert any(abs(s - row[c]) <= TOL for s in neighbours), (
            f"row {r}, rank {c}: CLI id {cli_ids[r, c]}, Python id {py_ids[r, c]}, scores not tied: {row}")
        if score_of is not None:
            assert abs(score_of(r, cli_ids[r, c]) - cli_scores[r, c]) <= TOL
    for r in range(len(cli_ids)):
        found = cli_ids[r][cli_ids[r] >= 0]
        assert len(set(found.tolist())) == len(found), f"row {r}: an id twice"


def test_default_scheme_through_the_cli(data, api, tmp_path):
    """enroll with the default scheme (t = 0.9, cohort z-scores): the cohort model is fitted from
    --train, or from --cohort; info says which; the file is Python's for the same steps, and
    verify's scores are Python's."""
    x, ids, train = data / "gallery.npy", data / "gallery_labels.npy", data / "train.npy"
    out = tmp_path / "default.pslerp"
    expect(run("enroll", x, "--ids", ids, "--train", train, "--out", out, "--seed", 5, "--unsealed"), OK)
    info = expect(run("info", out), OK).stdout
    assert "t=0.9" in info and "norm=cohort" in info, info
    assert f"score norm   cohort z-scores against the train, fitted from {TRAIN} vectors" in info, info
    index = api.index_factory(128, "PSlerp8x16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        index.set_seed(5)
    index.train(np.load(train))
    index.add_with_ids(np.load(x), np.load(ids))
    assert api.serialize_index(index, unsealed=True).tobytes() == out.read_bytes()
    scores = tmp_path / "scores.npy"
    expect(run("verify", "--index", out, data / "mated.npy", "--ids", data / "claimed.npy", "--threshold", "4",
               "--out", scores), OK)
    py = index.verify(np.load(data / "mated.npy"), np.load(data / "claimed.npy"))
    np.testing.assert_allclose(np.load(scores), py, rtol=0, atol=TOL)
    assert 0 < int((py >= 4).sum()) < MATED  # z-units: 4 splits the mated pairs here
    other = tmp_path / "cohort.pslerp"
    expect(run("enroll", x, "--ids", ids, "--train", train, "--cohort", data / "probes.npy", "--out", other,
               "--unsealed"), OK)
    assert f"user, fitted from {NPROBES} vectors" in expect(run("info", other), OK).stdout
    expect(run("enroll", x, "--cohort", data / "mated.npy", "--out", tmp_path / "never.pslerp", "--unsealed"),
           FAILED, ["at least 64"])
    assert not (tmp_path / "never.pslerp").exists()


@pytest.mark.parametrize("kind,factory", [("flat", FLAT_FACTORY), ("ivf", IVF_FACTORY)])
def test_enroll_equals_python_enrolment(data, api, kind, factory):
    """The CLI's enroll --seed 5 writes the file Python writes for the same steps: index_factory,
    set_seed, train on --train, add_with_ids."""
    index = api.index_factory(128, factory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        index.set_seed(5)
    index.train(np.load(data / "train.npy"))
    index.add_with_ids(np.load(data / "gallery.npy"), np.load(data / "gallery_labels.npy"))
    assert api.serialize_index(index, unsealed=True).tobytes() == (data / f"{kind}_clear.pslerp").read_bytes()


@pytest.mark.parametrize("name,kind,k,nprobe", [
    ("search flat", "flat", K, None),
    ("search ivf", "ivf", K, NLIST),
    ("search ivf nprobe", "ivf3", K, 3),
    ("search k beyond entries", "pad", GALLERY + 10, None),
])
def test_search_equals_python(data, results, api, name, kind, k, nprobe):
    """search -o: ids and scores are index.search's on the CLI's index file, same k and nprobe."""
    expect(results[name], OK)
    index = _load(api, data / ("ivf.pslerp" if nprobe else "flat.pslerp"))
    q = np.load(data / "probes.npy")
    py_scores, py_ids = index.search(q, k, **({"nprobe": nprobe} if nprobe else {}))
    cli_ids = np.load(data / "out" / f"{kind}_ids.npy")
    cli_scores = np.load(data / "out" / f"{kind}_scores.npy")
    assert_same_ranking(cli_ids, cli_scores, py_ids, py_scores,
                        score_of=lambda r, i: index.verify(q[r], int(i)))
    if nprobe == 3:
        # the option was applied: fewer lists find other results than every list
        exact_ids = index.search(q, k, nprobe=NLIST)[1]
        assert (exact_ids != cli_ids).any()
        assert (exact_ids == np.load(data / "out" / "ivf_ids.npy")).all()


def test_verify_equals_python(data, results, api):
    """verify --out: the scores of Python's verify for the same (probe, claimed id) pairs, and the
    accept count at the threshold; an unknown id is NaN in the CLI and an error naming it in Python."""
    mated, claimed = np.load(data / "mated.npy"), np.load(data / "claimed.npy")
    flat = _load(api, data / "flat.pslerp")
    py = flat.verify(mated, claimed)
    cli = np.load(data / "out" / "verify.npy")
    np.testing.assert_allclose(cli, py, rtol=0, atol=TOL)
    accepted = int((py >= 0.9).sum())
    assert 0 < accepted < MATED  # the threshold splits the pairs
    assert f"accepted {accepted} of {MATED} scored at threshold 0.9000" in results["verify"].stdout

    ivf = _load(api, data / "ivf.pslerp")
    unknown = np.load(data / "claimed_unknown.npy")
    known = np.ones(MATED, bool)
    known[[3, 17]] = False
    cli = np.load(data / "out" / "unknown.npy")
    np.testing.assert_allclose(cli[known], ivf.verify(mated[known], unknown[known]), rtol=0, atol=TOL)
    # (the two sealed galleries have different secret frames: their entries differ, so each file is
    # compared with its own Python answers only)
    for i in (3, 17):
        with pytest.raises(RuntimeError, match=f"unknown id {unknown[i]}"):
            ivf.verify(mated[i], int(unknown[i]))


def _read_report(path, n):
    existing, cluster = [[] for _ in range(n)], np.full(n, -1)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            i = int(row["item"])
            cluster[i] = int(row["cluster"])
            if row["gallery_id"]:
                existing[i].append((int(row["gallery_id"]), float(row["score"])))
    return existing, cluster


def test_dedup_equals_python(data, results, api):
    """dedup --report --enroll on the IVF index (nprobe 4): per batch item its cluster and its gallery
    matches (id, score), the counts printed and the items enrolled are Python's deduplicate on the
    CLI's index file.

    The threshold 0.95 keeps every pair within the batch far from it: those pairs are scored in a
    scratch index under fresh keys (a loaded index draws them from the OS), and a pair's protected
    score moves with its keys (up to about 0.9 for two people here, 1 for near copies)."""
    r = expect(results["dedup"], OK)
    batch = np.load(data / "batch.npy")
    index = _load(api, data / "ivf.pslerp")
    py = api.deduplicate(index, batch, 0.95, enroll=True, nprobe=4)
    existing, cluster = _read_report(data / "out" / "report.csv", len(batch))
    np.testing.assert_array_equal(cluster, py.cluster)
    _assert_same_matches(existing, py.existing)
    # the comparison covers every outcome: gallery matches, clusters within the batch (one with a
    # gallery match), new items
    assert py.duplicates_of_existing > 0 and py.clusters_with_several == 3 and len(py.unique) > 0
    assert (f"{py.duplicates_of_existing} match the gallery, {py.clusters_with_several} clusters within the "
            f"batch, {len(py.unique)} new") in r.stdout
    # Python enrolled the same items under the same ids; the CLI saved them (under other keys:
    # compare what they hold, each item scoring 1 against its own new entry).
    assert f"enrolled {len(py.unique)} new entries" in r.stdout
    saved = api.read_index(str(data / "out" / "dedup.pslerp"), secret=SECRET)
    assert saved.ntotal == GALLERY + len(py.unique) == index.ntotal
    assert all(saved.contains(int(i)) for i in py.enrolled_ids)
    np.testing.assert_allclose(saved.verify(batch[py.unique], py.enrolled_ids), 1.0, rtol=0, atol=TOL)


def test_dedup_gallery_matches_equal_python(data, results, api):
    """dedup on the exhaustive index at 0.85, where items match several gallery entries: the
    gallery matches of each item (id and score, best first) and their count are Python's. (Clusters
    within the batch are not compared: at 0.85 pairs of different people may or may not match,
    depending on the fresh keys; near copies always do.)"""
    r = expect(results["dedup flat"], OK)
    batch = np.load(data / "batch.npy")
    py = api.deduplicate(_load(api, data / "flat.pslerp"), batch, 0.85)
    existing, cluster = _read_report(data / "out" / "report_flat.csv", len(batch))
    _assert_same_matches(existing, py.existing)
    assert max(len(e) for e in py.existing) > 3
    assert f"{py.duplicates_of_existing} match the gallery" in r.stdout
    n = len(batch)
    assert cluster[n - 3] == cluster[NONMATED_IN_BATCH] and cluster[n - 2] == cluster[NONMATED_IN_BATCH + 1]
    assert cluster[n - 1] == cluster[0]


def _assert_same_matches(cli, py):
    assert len(cli) == len(py)
    for i, (cli_row, py_row) in enumerate(zip(cli, py)):
        assert len(cli_row) == len(py_row), (i, cli_row, py_row)
        if cli_row:
            (ci, cs), (pi, ps) = zip(*cli_row), zip(*py_row)
            assert_same_ranking([ci], [cs], [pi], [ps])


def test_extract_equals_python(ctx, results, api):
    """extract: a row per readable photo (the broken one skipped), identity<TAB>path labels, and
    the features of pslerp.Extractor on the same files."""
    r = result_of(ctx, results, "extract")
    d = ctx.d
    photos = sorted((d / "faces").rglob("*.jpg"))
    good = [p for p in photos if p.name != "broken.jpg"]
    assert f"extract: {len(photos)} images -> {len(good)} rows of D=128 (8x16, groups normalised)" in r.stdout
    x = np.load(d / "out" / "faces.npy")
    assert x.shape == (len(good), 128) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x.reshape(-1, 8, 16), axis=2), 1.0, rtol=1e-5)
    lines = [l.split("\t") for l in (d / "out" / "faces.tsv").read_text().splitlines()]
    assert len(lines) == len(good)
    paths = [pathlib.Path(p) for _, p in lines]
    assert sorted(paths) == good
    assert all(who == p.parent.name for who, p in zip((w for w, _ in lines), paths))
    if not hasattr(api, "Extractor"):
        pytest.skip("the pslerp Python package was built without the extractor")
    ex = api.Extractor(model_dir=str(MODEL_DIR))
    py = ex.extract_files([str(p) for p in paths])
    assert all(res.ok for res in py), [res.message for res in py]
    np.testing.assert_allclose(x, np.stack([res.features for res in py]), rtol=0, atol=TOL)


def test_extract_failures_write_nothing(ctx, results):
    """extract --strict with an unreadable image fails with "nothing written": nothing is."""
    if not ctx.has_extract:
        pytest.skip("the pslerp binary was built without the extractor (no extract command)")
    assert "extract missing folder" in results and "extract mean" in results
    assert not (ctx.d / "never.npy").exists()


# ----------------------------------------------------------------------------- eval


class TestEval:
    """pslerp eval: the evaluation report (report/report.h) from features and a labels file as
    `pslerp extract --labels` writes it (identity<TAB>path)."""

    @pytest.fixture(scope="class")
    def evald(self, tmp_path_factory):
        d = tmp_path_factory.mktemp("eval")
        rng = np.random.default_rng(4)
        centres = rng.normal(size=(30, 128))
        x = (np.repeat(centres, 3, axis=0) + 0.7 * rng.normal(size=(90, 128))).astype(np.float32)
        np.save(d / "x.npy", x)
        names = [f"person_{i // 3}" for i in range(90)]
        (d / "labels.tsv").write_text("".join(f"{n}\tfaces/{n}/{i}.jpg\n" for i, n in enumerate(names)))
        (d / "short.txt").write_text("\n".join(names[:-1]) + "\n")
        (d / "one.txt").write_text("ann\n" * 90)
        bad = x.copy()
        bad[4, 2] = np.nan
        np.save(d / "nan.npy", bad)
        return d

    def test_report_and_plots(self, evald):
        import json

        out = evald / "out"
        r = expect(run("eval", evald / "x.npy", "--labels", evald / "labels.tsv", "--out", out, "--seed", "3",
                       "--sweep", "t=0.9;drop=none", "--max-pairs", "2000"), OK)
        assert "eval: 90 rows, 30 identities" in r.stdout
        text = (out / "report.md").read_text()
        assert "'t=0.9;drop=none'" in text and "seed 3" in text
        assert "| t=0.9 |" in text and "| drop=none |" in text
        rep = json.loads((out / "report.json").read_text())
        assert rep["data"]["identities"] == 30
        assert rep["base"]["verification"]["protected"]["nonmated_pairs"] == 2000
        assert [p["label"] for p in rep["sweep"]] == ["t=0.9", "drop=none"]
        package = CLI.resolve().parent.parent / "python" / "pslerp" / "plots.py"
        try:
            import matplotlib  # noqa: F401
            can_draw = package.is_file()
        except ImportError:
            can_draw = False
        if can_draw:
            assert "Plots were not drawn" not in text, text[-600:]
            for png in ("det.png", "roc.png", "scores.png", "unlinkability.png", "rank1_gallery.png", "sweep.png"):
                assert (out / png).stat().st_size > 1000, png
        else:
            assert "Plots were not drawn" in text

    def test_same_seed_same_report(self, evald):
        import json

        reports = []
        for name in ("a", "b"):
            expect(run("eval", evald / "x.npy", "--labels", evald / "labels.tsv", "-o", evald / name, "--seed", "5",
                       "--sweep", "none", "--no-plots", "--max-pairs", "1000"), OK)
            rep = json.loads((evald / name / "report.json").read_text())
            rep.pop("command")
            reports.append(rep)
        assert reports[0] == reports[1]
        assert "Plots were not drawn: --no-plots" in (evald / "a" / "report.md").read_text()

    @pytest.mark.parametrize("args, code, fragment", [
        (["{d}/x.npy", "--labels", "{d}/short.txt"], FAILED, "has 89 labels for 90 feature rows"),
        (["{d}/x.npy", "--labels", "{d}/one.txt"], FAILED, "at least two identities"),
        (["{d}/nan.npy", "--labels", "{d}/labels.tsv"], FAILED, "feature 4 has a NaN"),
        (["{d}/x.npy", "--labels", "{d}/labels.tsv", "--sweep", "tee=1"], USAGE, "--sweep: unknown option 'tee'"),
        (["{d}/x.npy", "--labels", "{d}/labels.tsv", "--params", "groups=5"], USAGE, "do not divide"),
        (["{d}/x.npy"], USAGE, "--labels is required"),
    ])
    def test_bad_input(self, evald, args, code, fragment):
        out = evald / ("never_" + "".join(c for c in fragment if c.isalnum()))
        sweep = [] if "--sweep" in args else ["--sweep", "none"]
        expect(run("eval", *[fill(a, evald) for a in args], "--out", out, *sweep, "--no-plots"), code, [fragment])
        assert not out.exists()
