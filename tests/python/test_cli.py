"""Tests of the `pslerp` command line: every subcommand on tiny synthetic data, the happy path
and bad input (exit codes and messages).

Runs the built binary: $PSLERP_CLI, else tools/pslerp under the current folder (pytest runs from
the build folder: cd build && PYTHONPATH=python /usr/bin/python3 -m pytest -q ../tests/python),
else build/tools/pslerp of this checkout. Skips when none exists.

Exit codes under test (pslerp --help): 0 success, 1 the run failed, 2 usage error, 3 partial
success (some items failed, each reported on stderr).

Starting the binary costs about a second of CPU (it links LibTorch when the extractor is built),
so the commands run concurrently, once each, in one module fixture; the tests then check what
each one returned and wrote.
"""

import concurrent.futures
import os
import pathlib
import subprocess

import numpy as np
import pytest


def _find_cli():
    env = os.environ.get("PSLERP_CLI")
    if env:
        return pathlib.Path(env)
    for candidate in (pathlib.Path.cwd() / "tools" / "pslerp",
                      pathlib.Path(__file__).resolve().parents[2] / "build" / "tools" / "pslerp"):
        if candidate.is_file():
            return candidate
    return None


CLI = _find_cli()
pytestmark = pytest.mark.skipif(CLI is None or not CLI.is_file(),
                                reason="the pslerp binary is not built (or set PSLERP_CLI)")

OK, FAILED, USAGE, PARTIAL = 0, 1, 2, 3
GALLERY, MATED, NONMATED, TRAIN = 400, 40, 40, 640
NPROBES = MATED + NONMATED
HUGE = "4611686018427387904"  # 2^62: n * k * 4 bytes wraps a 64-bit size to 0

# name: (arguments, with {d} for the data folder; exit code; fragments of stderr)
CASES = {
    # ---- happy path
    "help": (["--help"], OK, []),
    "search help": (["search", "--help"], OK, []),
    "verify help": (["verify", "-h"], OK, []),
    "info flat": (["info", "{d}/flat.pslerp"], OK, []),
    "info ivf": (["info", "{d}/ivf.pslerp", "--threads=2"], OK, []),
    "search flat": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "-k", "5", "-t", "2",
                     "--labels", "{d}/probe_labels.npy", "-o", "{d}/out/flat"], OK, []),
    "search ivf": (["search", "--index", "{d}/ivf.pslerp", "{d}/probes.npy", "--k=5", "--threads", "1",
                    "--nprobe", "16", "--labels={d}/probe_labels.npy", "--out", "{d}/out/ivf"], OK, []),
    "search k beyond entries": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", f"-k{GALLERY + 10}",
                                 "-t2", "--out", "{d}/out/pad"], OK, []),
    "verify": (["verify", "--index", "{d}/flat.pslerp", "{d}/mated.npy", "--ids", "{d}/claimed.npy",
                "--threshold", "0.3", "--out", "{d}/out/verify.npy"], OK, []),
    "dedup": (["dedup", "--index", "{d}/ivf.pslerp", "{d}/batch.npy", "--threshold", "0.9", "--nprobe", "4",
               "--report", "{d}/out/report.csv", "--enroll", "--save", "{d}/out/dedup.pslerp"], OK, []),
    "bench": (["bench", "-n", "300", "--queries", "8", "--repeats", "1", "--train", "400", "-k", "5",
               "--factory", "IVF8,PSlerp8x16", "-t", "1"], OK, []),
    "demo": (["demo", "--gallery", "300", "--mated", "20", "--nonmated", "100", "--train", "800",
              "--impostors", "2", "--nlist", "8"], OK, []),
    # ---- partial success: each failed item reported, the others scored
    "verify unknown ids ivf": (["verify", "--index", "{d}/ivf.pslerp", "{d}/mated.npy", "--ids",
                                "{d}/claimed_unknown.npy", "--threshold", "0.3", "--out", "{d}/out/unknown.npy"],
                               PARTIAL, ["item 3: unknown id 999999", "item 17: unknown id -5", "2 of 40 items"]),
    "verify unknown id and nan probe": (["verify", "--index", "{d}/flat.pslerp", "{d}/mated_nan.npy", "--ids",
                                         "{d}/claimed_unknown.npy", "--threshold", "0.3"],
                                        PARTIAL, ["item 2: ", "item 3: unknown id 999999", "3 of 40 items"]),
    # ---- sizes
    "search k 2^62": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "-k", HUGE],
                      USAGE, [f"option -k: {HUGE} is out of range"]),
    "search k beyond int64": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "--k=99999999999999999999"],
                              USAGE, ["option --k: 99999999999999999999 is out of range"]),
    "search k 0": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "-k", "0"], USAGE, ["out of range"]),
    "search k 1abc": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "-k", "1abc"],
                      USAGE, ["expected an integer, got '1abc'"]),
    "nprobe huge": (["search", "--index", "{d}/ivf.pslerp", "{d}/probes.npy", "--nprobe", HUGE],
                    USAGE, ["exceeds the index's 16 lists"]),
    "nprobe beyond int64": (["search", "--index", "{d}/ivf.pslerp", "{d}/probes.npy", "--nprobe", "1" + "0" * 20],
                            USAGE, ["out of range"]),
    "nprobe exhaustive": (["dedup", "--index", "{d}/flat.pslerp", "{d}/batch.npy", "--threshold", "0.9",
                           "--nprobe", "4"], USAGE, ["IVF index only"]),
    "ef-search": (["search", "--index", "{d}/ivf.pslerp", "{d}/probes.npy", "--ef-search", "2147483647"],
                  USAGE, ["--ef-search belonged to the retired coarse stage"]),
    "k-factor": (["search", "--index", "{d}/ivf.pslerp", "{d}/probes.npy", "--k-factor=4294967297"],
                 USAGE, ["--k-factor belonged to the retired coarse stage"]),
    "synth gallery 2^62": (["synth", "--out", "{d}/never", "--gallery", HUGE],
                           USAGE, [f"option --gallery: {HUGE} is out of range"]),
    "synth noise nan": (["synth", "--out", "{d}/never", "--noise", "nan"], USAGE, ["expected a number, got 'nan'"]),
    "synth fraction": (["synth", "--out", "{d}/never", "--noisy-fraction", "1.5"], USAGE, ["out of range"]),
    "synth beyond memory": (["synth", "--out", "{d}/never", "--gallery", str(2 ** 40)], FAILED, ["memory"]),
    "bench results overflow": (["bench", "--n", "10", "--queries", str(2 ** 40), "-k", str(2 ** 20)],
                               FAILED, ["queries x k results", "overflows"]),
    "demo nprobe beyond nlist": (["demo", "--gallery", "100", "--nlist", "8", "--nprobe", "9"],
                                 USAGE, ["--nprobe 9 exceeds the 8 lists"]),
    "demo impostors": (["demo", "--impostors", str(2 ** 40)], USAGE, ["option --impostors"]),
    "enroll batch 0": (["enroll", "{d}/gallery.npy", "--out", "{d}/never.pslerp", "--batch", "0"],
                       USAGE, ["option --batch: 0 is out of range"]),
    # ---- parsing
    "threads 1abc": (["info", "{d}/flat.pslerp", "--threads", "1abc"], USAGE, ["expected an integer, got '1abc'"]),
    "threads huge": (["info", "{d}/flat.pslerp", "-t", "99999999"], USAGE, ["option -t: 99999999 is out of range"]),
    "threads 0": (["info", "{d}/flat.pslerp", "--threads=0"], USAGE, ["out of range"]),
    "repeated": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "-k", "3", "--k", "4"],
                 USAGE, ["given twice"]),
    "unknown option": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "--bogus", "1"],
                       USAGE, ["unknown option(s): --bogus"]),
    "unknown short": (["info", "{d}/flat.pslerp", "-z"], USAGE, ["unknown option -z"]),
    "flag value": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "--aligned=yes"],
                   USAGE, ["--aligned takes no value"]),
    "missing value": (["search", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "--labels", "--aligned"],
                      USAGE, ["--labels needs a value"]),
    "threshold inf": (["verify", "--index", "{d}/flat.pslerp", "{d}/mated.npy", "--ids", "{d}/claimed.npy",
                       "--threshold=inf"], USAGE, ["option --threshold"]),
    "missing required": (["verify", "--index", "{d}/flat.pslerp", "{d}/mated.npy", "--ids", "{d}/claimed.npy"],
                         USAGE, ["missing required option --threshold"]),
    "no positional": (["info"], USAGE, ["expected one index file"]),
    "unknown command": (["serch"], USAGE, ["unknown command 'serch'"]),
    "option first": (["--threads", "2", "info"], USAGE, ["the command comes first"]),
    "dedup save without enroll": (["dedup", "--index", "{d}/flat.pslerp", "{d}/batch.npy", "--threshold", "0.9",
                                   "--save", "{d}/never.pslerp"], USAGE, ["--enroll only"]),
    "bad factory": (["enroll", "{d}/gallery.npy", "--out", "{d}/never.pslerp", "--factory", "PSlerp9x99"],
                    USAGE, ["PSlerp9x99"]),
    # ---- runtime errors
    "missing file": (["search", "--index", "{d}/flat.pslerp", "{d}/nothing.npy"], FAILED, ["nothing.npy"]),
    "corrupt index": (["info", "{d}/cut.pslerp"], FAILED, ["cut.pslerp"]),
    "duplicate ids": (["enroll", "{d}/gallery.npy", "--ids", "{d}/dup_ids.npy", "--no-train",
                       "--out", "{d}/never.pslerp"], FAILED, []),
    "nan probe search": (["search", "--index", "{d}/ivf.pslerp", "{d}/mated_nan.npy"], FAILED, []),
    "dimension mismatch": (["search", "--index", "{d}/flat.pslerp", "{d}/dim64.npy"], FAILED, ["dimension 64"]),
    "ids count": (["verify", "--index", "{d}/flat.pslerp", "{d}/probes.npy", "--ids", "{d}/claimed.npy",
                   "--threshold", "0.3"], FAILED, [f"{MATED} ids for {NPROBES} features"]),
}


def run(*args):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PSLERP_PROGRESS="0")
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


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


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic gallery, probes and training features, enrolled as an exhaustive and an IVF
    index (trained on the training features of other identities), and the inputs of CASES."""
    d = tmp_path_factory.mktemp("cli")
    (d / "out").mkdir()
    expect(run("synth", "--out", d, "--gallery", GALLERY, "--mated", MATED, "--nonmated", NONMATED,
               "--train", TRAIN, "--seed", 7), OK)
    enrolments = [run("enroll", d / "gallery.npy", "--ids", d / "gallery_labels.npy", "--factory", factory,
                      "--train", d / "train.npy", "--out", d / f"{name}.pslerp", "--seed", 5)
                  for name, factory in (("flat", "PSlerp8x16"), ("ivf", "IVF16,PSlerp8x16"))]
    for r in enrolments:
        assert f"enrolled {GALLERY} entries" in expect(r, OK).stdout

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
    np.save(d / "batch.npy", np.concatenate([np.load(d / "gallery.npy")[:10], probes[MATED:MATED + 5]]))
    dup = np.arange(GALLERY, dtype=np.int64)
    dup[5] = dup[4]
    np.save(d / "dup_ids.npy", dup)
    np.save(d / "dim64.npy", np.ones((2, 64), dtype=np.float32))
    blob = (d / "flat.pslerp").read_bytes()
    (d / "cut.pslerp").write_bytes(blob[: len(blob) // 2])
    return d


@pytest.fixture(scope="module")
def results(data):
    """Every case of CASES, run concurrently."""
    def launch(args):
        return run(*[a.replace("{d}", str(data)) for a in args])

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(launch, args) for name, (args, _, _) in CASES.items()}
        return {name: f.result() for name, f in futures.items()}


# ----------------------------------------------------------------------------- every case


@pytest.mark.parametrize("name", list(CASES))
def test_exit_code_and_message(results, name):
    _, code, fragments = CASES[name]
    expect(results[name], code, fragments)


# ----------------------------------------------------------------------------- what the happy path wrote


def test_help_lists_commands_and_exit_codes(results):
    text = results["help"].stdout
    for command in ("demo", "synth", "enroll", "search", "verify", "dedup", "info", "bench"):
        assert f"  {command} " in text
    assert "exit codes" in text and "3 partial" in text and "--name=value" in text
    for name, command in (("search help", "search"), ("verify help", "verify")):
        text = results[name].stdout
        assert text.startswith(f"usage: pslerp {command}")
        assert "exit codes" in text and "--threads" in text


def test_synth_writes_arrays(data):
    assert np.load(data / "gallery.npy").shape == (GALLERY, 128)
    labels = np.load(data / "probe_labels.npy")
    assert labels.shape == (NPROBES,) and (labels[:MATED] >= 0).all() and (labels[MATED:] == -1).all()
    assert np.load(data / "train.npy").shape == (TRAIN, 128)


def test_info_both_kinds(results):
    assert "exhaustive" in results["info flat"].stdout
    assert f"entries      {GALLERY}" in results["info flat"].stdout
    assert "nlist        16" in results["info ivf"].stdout


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_search_writes_results(data, results, kind):
    assert f"searched {NPROBES} probes" in results[f"search {kind}"].stdout
    assert "rank-1 identification" in results[f"search {kind}"].stdout
    ids = np.load(data / "out" / f"{kind}_ids.npy")
    scores = np.load(data / "out" / f"{kind}_scores.npy")
    assert ids.shape == scores.shape == (NPROBES, 5)
    truth = np.load(data / "probe_labels.npy")[:MATED]
    assert (ids[:MATED, 0] == truth).mean() > 0.5  # chance: 1 / 400


def test_search_ivf_every_list_is_exact(results):
    assert "nprobe 16 of 16 lists, exact" in results["search ivf"].stdout


def test_k_beyond_entries_pads(data):
    ids = np.load(data / "out" / "pad_ids.npy")
    assert ids.shape == (NPROBES, GALLERY + 10)
    assert (ids[:, GALLERY:] == -1).all() and (ids[:, :GALLERY] >= 0).all()


def test_verify_scores(data, results):
    assert f"of {MATED} scored" in results["verify"].stdout
    assert np.isfinite(np.load(data / "out" / "verify.npy")).all()


def test_verify_unknown_ids_go_on(data, results):
    assert f"of {MATED - 2} scored" in results["verify unknown ids ivf"].stdout
    scores = np.load(data / "out" / "unknown.npy")
    assert np.isnan(scores[[3, 17]]).all()
    assert np.isfinite(np.delete(scores, [3, 17])).all()
    assert f"of {MATED - 3} scored" in results["verify unknown id and nan probe"].stdout


def test_dedup_report_and_enrolment(data, results):
    assert "match the gallery" in results["dedup"].stdout
    assert (data / "out" / "report.csv").read_text().startswith("item,cluster,gallery_id,score")
    assert (data / "out" / "dedup.pslerp").is_file()


def test_bench_and_demo(results):
    assert "ratio protected / FAISS IVF" in results["bench"].stdout
    assert "1:1 verification" in results["demo"].stdout and "protected IVF8" in results["demo"].stdout


def test_failed_runs_write_nothing(data, results):
    assert not (data / "never").exists()
    assert not (data / "never.pslerp").exists()


def test_messages_are_one_line(results):
    for name in ("duplicate ids", "nan probe search", "corrupt index", "search k 2^62"):
        lines = results[name].stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("pslerp "), results[name].stderr
