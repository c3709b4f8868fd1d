// Batched scoring kernel: AVX2 + FMA for the closed form, OpenBLAS sgemm for the dense products.
// Compiled with -mavx2 -mfma for this file only; used only when the CPU reports both.
//
// Per group g of a probe q and an entry (key k, template T, keep mask M), the closed form
// (docs/DESIGN.md section 2) needs <q,k>, <q,M T>, <q,M k> and <q^2,M>. Only two are dense:
//   <q, M k>   = <q, k> - sum over dropped i of q_i k_i
//   <q^2, M>   = |q|^2  - sum over dropped i of q_i^2
//   <q, M T>   = <q, T> - sum over dropped i of q_i T_i   (T_i = 0 under zero fill)
// so for a block of entries and a batch of queries, <q,k> and <q,T> of every pair are one sgemm
// per group (queries x d against d x (keys, templates)); the few dropped coordinates of each
// entry correct them, and the slerp coefficients, the normalisation and the weighted sum run
// eight queries per register, or sixteen with AVX-512 (batch_pass.h, batch_avx512.cpp).
// ke = <k,M T> and kmk = <k,M k> are recomputed per entry from the stored values (fp32 rows read
// in place, halves converted), so that scores follow what is stored.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "index/kernels/batch_pass.h"
#include "index/kernels/scan.h"
#include "index/kernels/simd_avx2.h"

// The Fortran BLAS interface, as FAISS calls it (OpenBLAS behind libblas.so).
extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                      const float* beta, float* c, const int* ldc);

namespace pslerp::kernels {

namespace {

using namespace avx2;

// Entries per sgemm call: as many as keep one call within 262144 multiply-adds, which
// OpenBLAS 0.3 runs on the calling thread (its threshold for threading is 4 * 65536; the scan
// is already split across OpenMP threads by the callers), from 32 to 256: fewer calls when the
// pass has few queries (each call costs about a microsecond). Queries per pass: 256.
constexpr int64_t kCallMacs = 262144;
// A power of two, so that blocks start at multiples of it from entry 0: every call computes an
// entry's products in the same sgemm position (columns of a full block, padded with zero entries
// at a range's ends), so a search's scores do not depend on how its rows were split between
// threads.
int sub_block(int64_t nqp, int d) {
    int sub = 32;
    while (sub < 256 && 2 * (2 * sub) * nqp * d <= kCallMacs) sub *= 2;
    return sub;
}
constexpr int64_t kQueryPass = 256;

// Per-thread working memory, grown to the largest shape seen.
struct Scratch {
    int sub = 32;              // entries per sgemm call (sub_block())
    std::vector<float> qt;    // queries transposed: D x nqp (sgemm's A, and the sparse corrections)
    std::vector<float> qsq;   // |q_g|^2: G x nqp
    std::vector<float> tq;    // slerp t: G x nqp
    std::vector<float> tmpl, key;           // one unpacked row
    std::vector<float> b;                   // per group: sub keys then sub templates, d each
    std::vector<float> ke, kmk, w;          // G x sub
    std::vector<int32_t> drop_count;        // G x sub: dropped coordinates per (group, entry)
    std::vector<int32_t> drop_row;          // G x sub x d slots: row of qt (g * d + i)
    std::vector<float> drop_k, drop_t;      // key and template at that coordinate
    std::vector<uint8_t> filled;            // G x sub: some dropped template value is non-zero
    std::vector<float> c;                   // sgemm output: 2 * sub x nqp, zero between calls
    std::vector<float> s;                   // scores: sub x nqp
    std::vector<SlerpRatio> ratio;          // G: per group, of the pass's t (ok: uniform and defined)
};

// Queries [0, nq) of the prepared (interleaved) form in the three layouts the pass reads.
void load_queries(const Layout& L, const float* queries, int64_t nq, int64_t nqp, Scratch& w) {
    const int G = L.groups, d = L.group_dim, D = G * d;
    const size_t V = L.vec_floats(), qf = L.query_floats();
    w.qt.assign(size_t(D) * nqp, 0.0f);
    w.qsq.assign(size_t(G) * nqp, 0.0f);
    w.tq.assign(size_t(G) * nqp, 0.0f);
    for (int64_t qi = 0; qi < nq; ++qi) {
        const float* q = queries + qi * qf;
        for (int g = 0; g < G; ++g) {
            const int blk = g / kLanes, l = g % kLanes;
            float sq = 0.0f;
            for (int i = 0; i < d; ++i) {
                const size_t o = (size_t(blk) * d + i) * kLanes + l;
                w.qt[size_t(g * d + i) * nqp + qi] = q[o];
                sq += q[V + o];
            }
            w.qsq[size_t(g) * nqp + qi] = sq;
            w.tq[size_t(g) * nqp + qi] = q[2 * V + g];
        }
    }
    // Padded queries (all zero: c = 0, never clamped, scores dropped) take query 0's t, so that
    // a batch of one t stays uniform.
    for (int g = 0; g < G; ++g) {
        float* t = w.tq.data() + size_t(g) * nqp;
        std::fill(t + nq, t + nqp, nq > 0 ? t[0] : 0.0f);
    }
}


// Transposes eight rows of eight floats in place: r[i][l] -> r[l][i].
inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

// Coordinates [i0, i0 + n) of block blk's groups (interleaved rows `src`, row i at src + i * 8)
// into group-major rows: dst(g) + i for each real group g of the block. n is 8 (transposed in
// registers) or less (element by element).
template <typename Dst>
void to_groups(const float* src, int i0, int n, int lanes, Dst&& dst) {
    if (n == kLanes) {
        __m256 r[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (i0 + i) * kLanes);
        transpose8(r);
        for (int l = 0; l < lanes; ++l) _mm256_storeu_ps(dst(l) + i0, r[l]);
        return;
    }
    for (int i = i0; i < i0 + n; ++i) {
        for (int l = 0; l < lanes; ++l) dst(l)[i] = src[i * kLanes + l];
    }
}

// How many entries ahead load_entries() asks for the rows it reads in place.
constexpr int kPrefetchAhead = 2;
inline void prefetch_row(const float* p, size_t floats) {
    for (size_t i = 0; i < floats; i += 16) _mm_prefetch(reinterpret_cast<const char*>(p + i), _MM_HINT_T0);
}

// n halves (a multiple of 8: whole blocks of the interleaved layout) to floats.
inline void halves_to_floats(const uint16_t* h, size_t n, float* out) {
    for (size_t i = 0; i < n; i += kLanes) {
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    }
}

// Entries base + [lo, hi) of the block of w.sub entries from `base`, in the pass's layouts: per
// group the keys and templates as sgemm's right-hand side (the block's other rows zero), ke,
// kmk, weights, and the dropped coordinates (up to d slots per group and entry).
void load_entries(const Entries& E, int64_t base, int lo, int hi, Scratch& w) {
    const Layout& L = E.layout;
    const int G = L.groups, d = L.group_dim;
    const int nb = w.sub;
    const size_t slots = size_t(G) * nb;
    w.tmpl.resize(L.vec_floats());
    w.key.resize(L.vec_floats());
    w.b.resize(slots * 2 * d);
    w.ke.resize(slots);
    w.kmk.resize(slots);
    w.w.resize(slots);
    w.filled.resize(slots);
    w.drop_count.resize(slots);
    w.drop_row.resize(slots * d);
    w.drop_k.resize(slots * d);
    w.drop_t.resize(slots * d);
    // Local pointers: the stores below through int32_t and float pointers would otherwise make
    // the compiler reload w's members after each one.
    float *const b = w.b.data(), *const ke_out = w.ke.data(), *const kmk_out = w.kmk.data(), *const w_out = w.w.data();
    float *const drop_k = w.drop_k.data(), *const drop_t = w.drop_t.data();
    int32_t *const drop_count = w.drop_count.data(), *const drop_row = w.drop_row.data();
    uint8_t* const filled_out = w.filled.data();
    float *const tmpl = w.tmpl.data(), *const key = w.key.data();
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (int g = 0; g < G; ++g) {  // rows outside [lo, hi): zero keys and templates
        float* bg = b + size_t(g) * 2 * nb * d;
        for (int half = 0; half < 2; ++half) {
            std::fill(bg + size_t(half * nb) * d, bg + size_t(half * nb + lo) * d, 0.0f);
            std::fill(bg + size_t(half * nb + hi) * d, bg + size_t(half * nb + nb) * d, 0.0f);
        }
    }
    // fp32 rows with a key per group are read in place; halves and shared keys unpacked.
    const bool in_place = !L.half && !L.shared_key;
    for (int jj = lo; jj < hi; ++jj) {
        const int64_t j = base + jj;
        if (in_place && jj + kPrefetchAhead < hi) {  // rows stream from memory once per query pass
            prefetch_row(E.templates + (j + kPrefetchAhead) * E.template_stride, L.vec_floats());
            prefetch_row(E.keys + (j + kPrefetchAhead) * E.key_stride, L.key_floats());
        }
        if (L.half && !L.shared_key) {  // F16C, eight at a time (the same floats as unpack_row)
            halves_to_floats(E.templates_h + j * E.template_stride, L.vec_floats(), tmpl);
            halves_to_floats(E.keys_h + j * E.key_stride, L.key_floats(), key);
        } else if (!in_place) {
            unpack_row(E, j, tmpl, key);
        }
        const float* row_t = in_place ? E.templates + j * E.template_stride : tmpl;
        const float* row_k = in_place ? E.keys + j * E.key_stride : key;
        if (L.shared_key) {  // one key for every group: widen it to the interleaved layout
            for (int i = d - 1; i >= 0; --i) {
                const float v = key[i];
                for (int blk = L.blocks() - 1; blk >= 0; --blk) {
                    for (int l = 0; l < kLanes; ++l) key[(size_t(blk) * d + i) * kLanes + l] = v;
                }
            }
        }
        const uint8_t* mask = E.masks + j * E.mask_stride;
        for (int blk = 0; blk < L.blocks(); ++blk) {
            const int lanes = std::min(kLanes, G - blk * kLanes);
            const unsigned real = (1u << lanes) - 1u;
            const float* kb = row_k + size_t(blk) * d * kLanes;
            const float* tb = row_t + size_t(blk) * d * kLanes;
            const size_t slot0 = size_t(blk * kLanes) * nb + jj;  // lane l: slot0 + l * nb
            unsigned filled = 0;  // bit l: lane l has a dropped non-zero template value
            __m256 ke = _mm256_setzero_ps(), kmk = _mm256_setzero_ps();
            for (int i = 0; i < d; ++i) {
                const uint8_t bits = mask[blk * d + i];
                const __m256 m = _mm256_castsi256_ps(
                        _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits), sel), sel));
                const __m256 kv = _mm256_loadu_ps(kb + i * kLanes), tv = _mm256_loadu_ps(tb + i * kLanes);
                const __m256 mk = _mm256_and_ps(m, kv);
                ke = _mm256_fmadd_ps(mk, tv, ke);
                kmk = _mm256_fmadd_ps(mk, kv, kmk);
                if (!L.zero_fill) {
                    const unsigned nonzero =
                            unsigned(_mm256_movemask_ps(_mm256_cmp_ps(tv, _mm256_setzero_ps(), _CMP_NEQ_UQ)));
                    filled |= ~unsigned(bits) & real & nonzero;
                }
            }
            // The dropped coordinates, lane by lane: bit l of 16 mask bytes at a time (shifted to
            // each byte's top bit, where movemask takes it).
            int count[kLanes] = {};
            for (int i0 = 0; i0 < d; i0 += 16) {
                const int n = std::min(16, d - i0);
                alignas(16) uint8_t part[16];  // fewer than 16 left: the rest marked kept
                if (n < 16) {
                    std::memset(part, 0xff, sizeof(part));
                    std::memcpy(part, mask + blk * d + i0, size_t(n));
                }
                const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(n < 16 ? part : mask + blk * d + i0));
                for (int l = 0; l < lanes; ++l) {
                    const unsigned kept = unsigned(_mm_movemask_epi8(_mm_sll_epi16(bytes, _mm_cvtsi32_si128(7 - l))));
                    const size_t at0 = (slot0 + size_t(l) * nb) * d;
                    for (unsigned rest = ~kept & 0xffffu; rest; rest &= rest - 1) {
                        const int i = i0 + __builtin_ctz(rest);
                        const size_t at = at0 + count[l]++;
                        drop_row[at] = (blk * kLanes + l) * d + i;
                        drop_k[at] = kb[i * kLanes + l];
                        drop_t[at] = tb[i * kLanes + l];
                    }
                }
            }
            alignas(32) float kes[kLanes], kmks[kLanes];
            _mm256_store_ps(kes, ke);
            _mm256_store_ps(kmks, kmk);
            const float* weights = E.weights + j * E.group_stride + blk * kLanes;
            for (int l = 0; l < lanes; ++l) {
                const size_t gj = slot0 + size_t(l) * nb;
                ke_out[gj] = kes[l];
                kmk_out[gj] = kmks[l];
                w_out[gj] = weights[l];
                drop_count[gj] = count[l];
                filled_out[gj] = (filled >> l) & 1u;
            }
            for (int i0 = 0; i0 < d; i0 += kLanes) {
                const int n = std::min(kLanes, d - i0);
                to_groups(kb, i0, n, lanes, [&](int l) { return b + (size_t(blk * kLanes + l) * 2 * nb + jj) * d; });
                to_groups(tb, i0, n, lanes,
                          [&](int l) { return b + (size_t(blk * kLanes + l) * 2 * nb + nb + jj) * d; });
            }
        }
    }
}

// The per-lane closed form (simd_avx2.h group_cosine8), for passes whose queries differ in t_g
// (t follows the probe's importance) or whose t has no SlerpRatio.
struct PerLaneCosine {
    const float* tq;  // the group's t per query
    __m256 operator()(__m256 c, int64_t q, __m256 qe, __m256 qmk, __m256 qqm, __m256 ke, __m256 kmk) const {
        return group_cosine8(c, _mm256_loadu_ps(tq + q), qe, qmk, qqm, ke, kmk);
    }
};

GroupBlock group_block(Scratch& w, int g, int d, int lo, int hi, int64_t nqp) {
    return GroupBlock{g, d, lo, hi, w.sub, nqp, w.c.data(), w.qt.data(), w.qsq.data() + size_t(g) * nqp,
                      w.w.data(), w.ke.data(), w.kmk.data(), w.drop_count.data(), w.drop_row.data(),
                      w.drop_k.data(), w.drop_t.data(), w.filled.data(), w.s.data()};
}

// Group g's pass: the ratio form of `passes` when the pass has one t_g with a SlerpRatio,
// else the per-lane closed form (AVX2).
int64_t group_pass_of(const RatioPasses& passes, Scratch& w, int g, int d, int lo, int hi, int64_t nqp) {
    const GroupBlock b = group_block(w, g, d, lo, hi, nqp);
    const bool first = g == 0;
    const SlerpRatio& R = w.ratio[g];
    if (R.ok) return passes.fn[R.terms / 4 - 1][first ? 0 : 1](b, R);
    const PerLaneCosine per_lane{w.tq.data() + size_t(g) * nqp};
    return first ? group_pass<Avx2, true>(b, per_lane) : group_pass<Avx2, false>(b, per_lane);
}

// Where score_range_with() puts a finished block (entries base + [lo, hi) of queries q0 + [0, nq),
// w.s holding their weighted sums entry-major): out[qi * ld + (j - j0)] with the offsets added
// (ScoreRangeFn's contract), transposed one output row (query) at a time, so that the strided
// reads stay in cache.
struct ToMatrix {
    float* out;
    int64_t ld, j0;
    void operator()(const Entries& E, const Scratch& w, int64_t q0, int64_t nq, int64_t nqp, int64_t base, int lo,
                    int hi) const {
        const float* offsets = E.offsets + base * E.offset_stride;
        for (int64_t qi = 0; qi < nq; ++qi) {
            float* o = out + (q0 + qi) * ld + (base - j0);
            for (int jj = lo; jj < hi; ++jj) o[jj] = w.s[size_t(jj) * nqp + qi] + offsets[jj * E.offset_stride];
        }
    }
};

// Or to a ScoreSink, entry-major from w.s itself, the offsets added in place (the same sums).
struct ToSink {
    ScoreSink& sink;
    void operator()(const Entries& E, Scratch& w, int64_t q0, int64_t nq, int64_t nqp, int64_t base, int lo,
                    int hi) const {
        for (int jj = lo; jj < hi; ++jj) {
            const __m256 offset = _mm256_set1_ps(E.offsets[(base + jj) * E.offset_stride]);
            float* s = w.s.data() + size_t(jj) * nqp;
            for (int64_t q = 0; q < nq; q += 8) _mm256_storeu_ps(s + q, _mm256_add_ps(_mm256_loadu_ps(s + q), offset));
        }
        sink.take(q0, nq, base + lo, hi - lo, w.s.data() + size_t(lo) * nqp, nqp, 1);
    }
};

template <class Out>
int64_t score_range_with(const RatioPasses& passes, const Entries& E, const float* queries, int64_t nq_all,
                         int64_t j0, int64_t j1, const Out& put) {
    const Layout& L = E.layout;
    const int G = L.groups, d = L.group_dim, D = G * d;
    thread_local Scratch w;
    int64_t clamped = 0;
    for (int64_t q0 = 0; q0 < nq_all; q0 += kQueryPass) {
        const int64_t nq = std::min(kQueryPass, nq_all - q0);
        const int64_t nqp = (nq + kBatchQueryAlign - 1) / kBatchQueryAlign * kBatchQueryAlign;
        load_queries(L, queries + q0 * L.query_floats(), nq, nqp, w);
        w.sub = sub_block(nqp, d);
        // sgemm adds to c (beta 1: OpenBLAS then skips a pass that zeroes it before every call), and
        // group_pass() zeroes what it reads: rows of entries outside [lo, hi) stay zero.
        w.c.assign(size_t(2) * w.sub * nqp, 0.0f);
        w.s.resize(size_t(w.sub) * nqp);
        // Per group: one t for every query of the pass (t does not follow the probe's
        // importance) takes the ratio form; otherwise the per-lane closed form.
        w.ratio.assign(G, SlerpRatio(1.0f));  // not ok
        for (int g = 0; g < G; ++g) {
            const float* tq = w.tq.data() + size_t(g) * nqp;
            if (std::all_of(tq, tq + nqp, [&](float t) { return t == tq[0]; })) w.ratio[g] = cached_slerp_ratio(tq[0]);
        }
        for (int64_t base = j0 / w.sub * w.sub; base < j1; base += w.sub) {
            const int lo = int(std::max<int64_t>(j0 - base, 0)), hi = int(std::min<int64_t>(j1 - base, w.sub));
            const int nb = w.sub;
            load_entries(E, base, lo, hi, w);
            for (int g = 0; g < G; ++g) {
                const int m = int(nqp), n = 2 * nb, k = d, lda = int(nqp), ldb = d, ldc = int(nqp);
                const float one = 1.0f;
                sgemm_("N", "N", &m, &n, &k, &one, w.qt.data() + size_t(g) * d * nqp, &lda,
                       w.b.data() + size_t(g) * 2 * nb * d, &ldb, &one, w.c.data(), &ldc);
                clamped += group_pass_of(passes, w, g, d, lo, hi, nqp);
            }
            put(E, w, q0, nq, nqp, base, lo, hi);
        }
    }
    return clamped;
}

constexpr RatioPasses kAvx2Passes = ratio_passes_for<Avx2>();

int64_t score_range_avx2(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                         int64_t ld) {
    return score_range_with(kAvx2Passes, E, queries, nq, j0, j1, ToMatrix{out, ld, j0});
}

int64_t score_into_avx2(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, ScoreSink& sink) {
    return score_range_with(kAvx2Passes, E, queries, nq, j0, j1, ToSink{sink});
}

int64_t score_range_avx512(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1, float* out,
                           int64_t ld) {
    return score_range_with(*avx512_ratio_passes(), E, queries, nq, j0, j1, ToMatrix{out, ld, j0});
}

int64_t score_into_avx512(const Entries& E, const float* queries, int64_t nq, int64_t j0, int64_t j1,
                          ScoreSink& sink) {
    return score_range_with(*avx512_ratio_passes(), E, queries, nq, j0, j1, ToSink{sink});
}

}  // namespace

const KernelTable* batch_avx2_kernels() {
    static const KernelTable* table = []() -> const KernelTable* {
        const KernelTable* simd = avx2_kernels();
        if (!simd) return nullptr;
        static const KernelTable t{"avx2+sgemm", &score_range_avx2, simd->score_list, simd->group_cosines,
                                   &score_into_avx2};
        return &t;
    }();
    return table;
}

const KernelTable* batch_kernels() {
    static const KernelTable* table = []() -> const KernelTable* {
        const KernelTable* simd = batch_avx2_kernels();
        if (!simd || !avx512_ratio_passes() || simd_capped_at("avx2")) return simd;
        static const KernelTable t{"avx512+sgemm", &score_range_avx512, simd->score_list, simd->group_cosines,
                                   &score_into_avx512};
        return &t;
    }();
    return table;
}

}  // namespace pslerp::kernels
