"""pslerp: protected face-template search inside FAISS (the SlerpFace scheme).

A raw face feature of dimension D = G * d is split into G groups; each group is rotated on its
sphere toward a random key by spherical linear interpolation (slerp), some coordinates are
dropped, and only the protected template, its key and its drop mask are stored. Two FAISS-style
indexes keep such templates and match raw probes against them (add / search / range_search /
remove_ids / verify):

- ``IndexProtectedSlerp``: exhaustive, exact search over every entry (the oracle).
- ``IndexIVFProtectedSlerp``: an IVF whose lists hold only protected entries; a search scores
  the entries of the ``nprobe`` lists nearest to the probe (default ``default_nprobe(nlist)``,
  about 3% of the lists; ``nprobe=nlist`` gives exactly the exhaustive answer). It needs
  train() on representative features first.

Index API, with FAISS's names::

    import numpy as np, pslerp
    index = pslerp.index_factory(128, "IVF1024,PSlerp8x16")   # or "PSlerp8x16": exhaustive
    index.train(xt)                       # xt: (>= nlist, 128) float32, not the enrolled ones
    index.add(x)                          # x: (n, 128) float32 raw features
    D, I = index.search(q, 5)             # the index's nprobe
    D, I = index.search(q, 5, nprobe=64)  # this call only
    secret = pslerp.generate_secret()     # 32 bytes: keep it apart from the file
    pslerp.write_index(index, "gallery.pslerp", secret=secret)   # sealed; unsealed=True for clear

The scheme's functions (deterministic when keys and masks are given)::

    p = pslerp.Params(8, 16, t=0.7)
    templates, keys, masks, weights = pslerp.protect(x, p)
    scores = pslerp.match(q, templates, keys, masks, p, weights)

Every array argument is a numpy float32 (ids: int64) C-contiguous array; anything else raises
a ValueError naming the argument, and so do NaN or infinite values and groups of zero norm,
in every function and method. Other errors inside the index (unknown or duplicate id,
untrained index) raise RuntimeError.

Threads: the GIL is released while C++ computes and the indexes lock themselves: searches,
verification and saving run concurrently from any number of threads; add, remove_ids, train,
reset and set_seed run alone, and neither side waits forever.

Seeds (``generate_keys(seed=)``, ``protect(seed=)``, ``Index.set_seed``) make keys
reproducible: for tests and benchmarks only; each use warns (RuntimeWarning). A loaded index
keeps the seed on record (``index.seed``) but draws later keys from the OS generator unless
set_seed is called again.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import numpy as np

from ._pslerp import (  # noqa: F401  (re-exported)
    FAISS_VERSION,
    HAS_EXTRACTOR,
    DedupResult,
    Index,
    IndexIVFProtectedSlerp,
    IndexProtectedSlerp,
    Params,
    SynthConfig,
    default_nprobe,
    deserialize_index,
    enable_secret_frame,
    equal_error_rate,
    generate_secret,
    has_secret_frame,
    index_factory,
    read_index,
    roc_curve,
    serialize_index,
    tar_at_far,
    unlinkability,
    write_index,
)
from . import _pslerp
from .evaluate import evaluate  # noqa: F401  (re-exported: the evaluation suite)

if HAS_EXTRACTOR:
    from ._pslerp import Extractor, ExtractResult  # noqa: F401

__version__ = _pslerp.__version__

__all__ = [
    "FAISS_VERSION",
    "HAS_EXTRACTOR",
    "DedupResult",
    "Index",
    "IndexIVFProtectedSlerp",
    "IndexProtectedSlerp",
    "Params",
    "SynthConfig",
    "SynthSplit",
    "deduplicate",
    "default_nprobe",
    "deserialize_index",
    "enable_secret_frame",
    "equal_error_rate",
    "generate_keys",
    "generate_secret",
    "has_secret_frame",
    "index_factory",
    "match",
    "match_all",
    "protect",
    "read_index",
    "roc_curve",
    "serialize_index",
    "synth",
    "tar_at_far",
    "unlinkability",
    "write_index",
]
if HAS_EXTRACTOR:
    __all__ += ["Extractor", "ExtractResult"]


# ----------------------------------------------------------------------------- the scheme


_SEED_WARNING = ("pslerp: a seed makes keys, masks and fills reproducible: for tests and benchmarks only, "
                 "never for real enrolments")


def _warn_seeded(seed: Optional[int]) -> None:
    if seed is not None:
        warnings.warn(_SEED_WARNING, RuntimeWarning, stacklevel=3)


def generate_keys(n: int, params: Params, seed: Optional[int] = None) -> np.ndarray:
    """Draws n entries' keys: float32 (n, G, d), every group unit-norm.

    Keys come from the operating system's cryptographically secure generator; ``seed`` makes
    them reproducible (tests and benchmarks only, never for real enrolments; it warns with a
    RuntimeWarning). With ``params.key_mode == "shared"`` one key per entry is repeated
    across its G groups.
    """
    _warn_seeded(seed)
    return _pslerp.generate_keys(int(n), params, seed)


def protect(x: np.ndarray, params: Params, keys: Optional[np.ndarray] = None,
            masks: Optional[np.ndarray] = None, weights: Optional[np.ndarray] = None,
            seed: Optional[int] = None):
    """Protects raw features x (n, G*d) float32 (already centred; groups are normalised here).

    Args:
        keys: (n, G, d) float32 unit-norm keys (see generate_keys); drawn when None. With
            key_mode "shared" every group of an entry must hold the same key.
        masks: (n, G, d) bool (True = kept) or uint8 keep masks; drawn per the drop policy
            when None. Every group must keep at least one coordinate.
        weights: (n, G) float32 per-group importance of each sample (>= 0, normalised here);
            when None the params' importance provider computes it.
        seed: makes drawn keys, masks and random fill reproducible (tests only; warns with a
            RuntimeWarning).

    Returns:
        (templates (n, G*d) float32, keys (n, G, d) float32, masks (n, G, d) bool,
        weights (n, G) float32 combination weights to pass to match / match_all).

    Given keys and masks (and fill "zero"), the result depends on nothing else.
    NaN or infinite values and zero groups in x raise ValueError.
    """
    _warn_seeded(seed)
    return _pslerp.protect(x, params, keys, masks, weights, seed)


def _combination_weights(params: Params, weights, n: int, name: str = "weights"):
    if weights is not None:
        return weights
    if params.weighting == "importance":
        raise ValueError(f"{name}: required when params.weighting is 'importance' "
                         "(pass the weights that protect() returned)")
    return np.full((n, params.groups), 1.0 / params.groups, dtype=np.float32)


def match(q: np.ndarray, templates: np.ndarray, keys: np.ndarray, masks: np.ndarray,
          params: Params, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Scores raw probe i against protected entry i: (n,) float32.

    q (n, G*d) raw probes; templates (n, G*d), keys (n, G, d), masks (n, G, d) as protect()
    returned them. The score is sum_g w_g cos(transformed probe group g, template group g):
    each probe group is normalised, slerped toward the entry's key (the probe's own t_g),
    masked, normalised and compared with the template group (docs/DESIGN.md section 1, step 7).

    weights: (n, G) float32 combination weights. None means uniform 1/G, which is right for
    params.weighting == "uniform"; with "importance" (e.g. the slerpface preset) the enrolled
    weights from protect() are required and None raises ValueError.
    """
    n = templates.shape[0] if hasattr(templates, "shape") and len(templates.shape) else 0
    return _pslerp.match(q, templates, keys, masks, params, _combination_weights(params, weights, n))


def match_all(q: np.ndarray, templates: np.ndarray, keys: np.ndarray, masks: np.ndarray,
              params: Params, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Scores every raw probe against every protected entry: (nq, n) float32.

    Arguments as in match(), with nq probes q (nq, G*d) and n entries. Row i of the result
    ranks the entries for probe i as an exhaustive IndexProtectedSlerp search would
    (without centring).
    """
    n = templates.shape[0] if hasattr(templates, "shape") and len(templates.shape) else 0
    return _pslerp.match_all(q, templates, keys, masks, params, _combination_weights(params, weights, n))


# ----------------------------------------------------------------------------- synthetic data


class SynthSplit(NamedTuple):
    """A gallery and probes from synth(gallery_size=...)."""

    gallery: np.ndarray          #: (gallery_size, D) float32, one enrolment per identity
    gallery_labels: np.ndarray   #: (gallery_size,) int64 identity = row
    probes: np.ndarray           #: (mated + nonmated, D) float32, mated probes first
    probe_labels: np.ndarray     #: (mated + nonmated,) int64 identity, -1 for non-mated


def synth(identities: int = 1000, samples_per_identity: int = 2, *, groups: int = 8,
          group_dim: int = 16, seed: int = 42, gallery_size: Optional[int] = None,
          mated_probes: int = 0, nonmated_probes: int = 0, **config):
    """Synthetic identity-labelled features calibrated to ArcFace-like embeddings.

    Without gallery_size: returns (x (identities * samples_per_identity, G*d) float32,
    labels int64); row i * samples_per_identity + s is sample s of identity i.

    With gallery_size: returns a SynthSplit (gallery of one enrolment per identity, then
    mated_probes probes of gallery identities and nonmated_probes probes of unseen ones).

    Other keywords set SynthConfig fields (noise, quality_spread, group_noise_spread,
    noisy_group_fraction, noisy_group_scale, centre_decay, nonmated_sd, offset_norm, norm).
    Deterministic in seed.
    """
    cfg = SynthConfig(groups=groups, group_dim=group_dim, identities=identities,
                      samples_per_identity=samples_per_identity, seed=seed, **config)
    if gallery_size is None:
        return _pslerp.synth_samples(cfg)
    return SynthSplit(*_pslerp.synth_gallery(cfg, gallery_size, mated_probes, nonmated_probes))


# ----------------------------------------------------------------------------- index conveniences


def deduplicate(index: Index, x: np.ndarray, threshold: float, enroll: bool = False,
                ids: Optional[np.ndarray] = None, **search_options) -> DedupResult:
    """Same as index.deduplicate(x, threshold, enroll, ids, **search_options).

    search_options: nprobe=... for an IndexIVFProtectedSlerp (lists probed by the gallery
    search); the exhaustive index takes none.
    """
    return index.deduplicate(x, threshold, enroll, ids, **search_options)


def _faiss_serialize(quantizer) -> np.ndarray:
    """A python3-faiss index as faiss.serialize_index bytes (IndexIVFProtectedSlerp's quantizer)."""
    try:
        import faiss  # python3-faiss: its own copy of FAISS
    except ImportError as e:  # pragma: no cover - depends on the system
        raise ImportError("the faiss python module is needed here (Debian: apt install python3-faiss)") from e
    if getattr(faiss, "__version__", None) != FAISS_VERSION:
        raise RuntimeError(
            f"faiss python module version {getattr(faiss, '__version__', 'unknown')} does not match the FAISS "
            f"pslerp was built with ({FAISS_VERSION}); FAISS objects can only be exchanged between equal versions")
    if not isinstance(quantizer, faiss.Index):
        raise ValueError(f"quantizer: expected None, a faiss factory string, bytes or a faiss.Index, "
                         f"got {type(quantizer).__name__}")
    return faiss.serialize_index(quantizer)
