#!/usr/bin/env bash
# Mutation check (issue 16): applies named one-line mutations to the scheme (plugin/scheme.cpp,
# plugin/protect.cpp, plugin/params.cpp) and the kernels (index/kernels/*), one at a time,
# rebuilds only the test targets that cover the mutated file, runs those tests, restores the
# file, and prints which mutations the suite killed and which survived.
#
#   scripts/mutation_check.sh [options] [NAME_OR_GLOB...]
#
#   -b DIR       work folder (default build-mut; env PSLERP_MUT_DIR): DIR/src is a private copy
#                of the source tree, DIR/build its build
#   -j N         build jobs (default 2)
#   -t SECONDS   time limit of each test command (default 600); a test that runs past it kills
#                the mutant (an infinite loop is a detected change)
#   --in-place   mutate the working tree itself instead of the private copy (the file is
#                restored on exit, Ctrl-C included; do not use while others edit these files)
#   --list       list the mutations and their tests, run nothing
#   --check      only check that every pattern occurs exactly once in the working tree
#   NAME...      run only these mutations (shell globs: 'median*')
#
# Exit status: 0 when every mutation tried was killed; 1 when one survived, its pattern no
# longer matches exactly once (the table needs updating), or a mutant failed to build; 2 on a
# usage error or when the unmutated tree fails the tests (nothing can be judged then).
#
# Everything runs under nice -n 19. The private copy (default) is refreshed from the working
# tree (tracked and untracked, not ignored files) at each run, so that the check never touches
# files other people are editing; mutating the copy and rebuilding it leaves the working tree's
# own builds alone.
#
# Tests are given as:
#   gtest:BINARY[:FILTER]   a GoogleTest binary of tests/cpp (built as target BINARY)
#   scalar:BINARY[:FILTER]  the same with PSLERP_SIMD=scalar (the scalar kernel in use)
#   py:FILE[:KEXPR]         pytest on tests/python/FILE (target _pslerp), -k KEXPR if given
# A mutant is killed by the first test command that fails (non-zero exit, crash or time-out).
#
# Adding a mutation: one `mutation` line below. The pattern is a literal string (not a regular
# expression; it may span lines with $'...\n...'), it must occur exactly once in the file, and
# the replacement must compile. Prefer the smallest change that a plausible slip would make.

set -uo pipefail
set -f  # test filters and patterns hold '*': never expand them against files

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PSLERP_MUT_DIR:-build-mut}
JOBS=2
LIMIT=600
IN_PLACE=0
LIST_ONLY=0
CHECK_ONLY=0
SELECT=()

usage() { sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

while (($#)); do
    case "$1" in
        -b) WORK=$2; shift 2 ;;
        -j) JOBS=$2; shift 2 ;;
        -t) LIMIT=$2; shift 2 ;;
        --in-place) IN_PLACE=1; shift ;;
        --list) LIST_ONLY=1; shift ;;
        --check) CHECK_ONLY=1; shift ;;
        -h|--help) usage ;;
        -*) echo "mutation_check: unknown option $1" >&2; usage ;;
        *) SELECT+=("$1"); shift ;;
    esac
done
[[ "$WORK" = /* ]] || WORK="$ROOT/$WORK"

# ---------------------------------------------------------------- the mutations
#
# mutation NAME FILE PATTERN REPLACEMENT TESTS...

NAMES=(); FILES=(); OLDS=(); NEWS=(); TESTS=()
mutation() {
    NAMES+=("$1"); FILES+=("$2"); OLDS+=("$3"); NEWS+=("$4"); shift 4; TESTS+=("$*")
}

# What covers what. Scheme code: the plugin tests, the index tests that score through it, and
# the numpy references of the Python suite. Kernels: the kernel tests against the double
# reference, with each kernel in use.
SCHEME_TESTS="gtest:test_plugin gtest:test_index gtest:test_ivf:-*DefaultNprobe* py:test_pslerp.py"
SCALAR_TESTS="scalar:test_index gtest:test_index scalar:test_ivf:-*DefaultNprobe*"
AVX2_TESTS="gtest:test_index gtest:test_ivf:-*DefaultNprobe* gtest:test_io:GoldenFiles.*"

# -- kernels: scalar (coeffs.h group_cosine is the scalar kernel's arithmetic) and shared code
mutation kernel_scalar_no_lower_clamp index/kernels/coeffs.h \
    'c = std::min(std::max(c, kAntipodalCosF), 1.0f);' \
    'c = std::min(c, 1.0f);' $SCALAR_TESTS
mutation kernel_scalar_no_upper_clamp index/kernels/coeffs.h \
    'c = std::min(std::max(c, kAntipodalCosF), 1.0f);' \
    'c = std::max(c, kAntipodalCosF);' $SCALAR_TESTS
mutation kernel_scalar_a_uses_t index/kernels/coeffs.h \
    'const float a = (1.0f - t) * poly_sinc((1.0f - t) * theta);' \
    'const float a = t * poly_sinc(t * theta);' $SCALAR_TESTS
mutation kernel_scalar_cross_term_halved index/kernels/coeffs.h \
    '2.0f * a * b * qmk' \
    'a * b * qmk' $SCALAR_TESTS
mutation kernel_scalar_mask_bit index/kernels/scan_scalar.cpp \
    'const float m = (bits >> l) & 1 ? 1.0f : 0.0f;' \
    'const float m = (bits >> l) & 2 ? 1.0f : 0.0f;' $SCALAR_TESTS
mutation kernel_scalar_shared_key_lane index/kernels/scan_scalar.cpp \
    'const float k = L.shared_key ? load(ky, i) : load(ky, o + l);' \
    'const float k = L.shared_key ? load(ky, i) : load(ky, o);' $SCALAR_TESTS
mutation kernel_scalar_clamp_count_sign index/kernels/scan_scalar.cpp \
    'clamped += c[l] < kAntipodalCosF;' \
    'clamped += c[l] > kAntipodalCosF;' $SCALAR_TESTS
mutation kernel_query_square index/kernels/scan.cpp \
    'q2[o] = xn[g * d + i] * xn[g * d + i];' \
    'q2[o] = xn[g * d + i];' $AVX2_TESTS

# -- kernels: AVX2
mutation kernel_simd_no_lower_clamp index/kernels/coeffs.h \
    'return S::min(S::max(c, S::set1(kAntipodalCosF)), S::set1(1.0f));' \
    'return S::min(c, S::set1(1.0f));' $AVX2_TESTS
mutation kernel_simd_b_uses_1mt index/kernels/coeffs.h \
    'const V b = S::mul(t, poly_sinc_v<S>(S::mul(t, theta)));' \
    'const V b = S::mul(t, poly_sinc_v<S>(S::mul(u, theta)));' $AVX2_TESTS
mutation kernel_simd_newton_step index/kernels/coeffs.h \
    'return S::mul(r, S::sub(S::set1(1.5f), half_x_r2));' \
    'return S::mul(r, S::sub(S::set1(1.0f), half_x_r2));' $AVX2_TESTS
mutation kernel_avx2_query_pair_tail index/kernels/scan_avx2.cpp \
    'for (; qi + 2 <= nq; qi += 2) clamped' \
    'for (; qi + 2 < nq; qi += 2) clamped' $AVX2_TESTS
mutation kernel_avx2_odd_query_tail index/kernels/scan_avx2.cpp \
    'if (qi < nq) clamped' \
    'if (qi + 1 < nq) clamped' $AVX2_TESTS
mutation kernel_avx2_padded_lanes_weighted index/kernels/scan_avx2.cpp \
    'const __m256 low = _mm256_and_ps(used, _mm256_cmp_ps(c[n], _mm256_set1_ps(kAntipodalCosF), _CMP_LT_OQ));' \
    'const __m256 low = _mm256_cmp_ps(c[n], _mm256_set1_ps(kAntipodalCosF), _CMP_LT_OQ);' $AVX2_TESTS
mutation kernel_avx2_no_offset index/kernels/scan_avx2.cpp \
    'for (int n = 0; n < NQ; ++n) *outs[n] = hsum8(score[n]) + offset;' \
    'for (int n = 0; n < NQ; ++n) *outs[n] = hsum8(score[n]);' $AVX2_TESTS gtest:test_cohort
mutation kernel_scalar_no_offset index/kernels/scan_scalar.cpp \
    'if constexpr (!kPerGroup) *out = score + E.offsets[j * E.offset_stride];' \
    'if constexpr (!kPerGroup) *out = score;' $SCALAR_TESTS scalar:test_cohort

# -- cohort score normalisation
mutation cohort_no_group_sd index/cohort.cpp \
    'const double wn = w[g] / (sd[g] * S);' \
    'const double wn = w[g] / S;' gtest:test_cohort
mutation cohort_offset_sign index/cohort.cpp \
    'b -= static_cast<double>(w[g]) * mu[g];' \
    'b += static_cast<double>(w[g]) * mu[g];' gtest:test_cohort
mutation kernel_avx2_mask_select index/kernels/scan_avx2.cpp \
    'for (int l = 0; l < kLanes; ++l) lanes[bits][l] = (bits >> l) & 1 ? 0xffffffffu : 0u;' \
    'for (int l = 0; l < kLanes; ++l) lanes[bits][l] = (bits >> (l ^ 7)) & 1 ? 0xffffffffu : 0u;' $AVX2_TESTS

# -- batched kernel (issue 12): the sparse corrections over the dropped coordinates
mutation batch_qmk_correction index/kernels/batch_pass.h \
    'qmk[u] = S::fnmadd(qv, kv, qmk[u]);' \
    'qmk[u] = S::fmadd(qv, kv, qmk[u]);' gtest:test_index
mutation batch_qqm_correction index/kernels/batch_pass.h \
    'qqm[u] = S::fnmadd(qv, qv, qqm[u]);' \
    'qqm[u] = S::fmadd(qv, qv, qqm[u]);' gtest:test_index
mutation batch_fill_correction index/kernels/batch_pass.h \
    'if (filled) qe[u] = S::fnmadd(qv, tv, qe[u]);' \
    'if (!filled) qe[u] = S::fnmadd(qv, tv, qe[u]);' gtest:test_index
# -- the ratio form: the ratio it fits (a slip the fit's own check cannot see), the choice of its
# length, and its denominator
mutation batch_ratio_series index/kernels/scan.cpp \
    'return th > 0.0 ? std::sin(t * th) / std::sin((1.0 - t) * th) : t / (1.0 - t);' \
    'return th > 0.0 ? std::sin(t * th * 1.0001) / std::sin((1.0 - t) * th) : t / (1.0 - t);' gtest:test_index
mutation batch_ratio_terms index/kernels/scan.cpp \
    'if (worst <= 1e-6) {' \
    'if (worst <= 1e-2) {' gtest:test_index
mutation batch_ratio_den index/kernels/batch_pass.h \
    'V den = S::fmadd(r, kmk, S::add(qmk, qmk));' \
    'V den = S::fmadd(r, kmk, qmk);' gtest:test_index

# -- the block loads: each group's dropped coordinates come from its bit of the mask bytes
mutation batch_drop_lane index/kernels/batch_avx2.cpp \
    '_mm_movemask_epi8(_mm_sll_epi16(bytes, _mm_cvtsi32_si128(7 - l)))' \
    '_mm_movemask_epi8(_mm_sll_epi16(bytes, _mm_cvtsi32_si128(7 - (l ^ 1))))' gtest:test_index

# -- the score sink (issue 12, fourth pass): the output zeroed as read (sgemm adds to it), the
# offsets added in place, the search's four-at-a-time comparison and the IVF's ids
mutation batch_output_not_zeroed index/kernels/batch_pass.h \
    'S::store(ck + q + u * W, zero), S::store(ct + q + u * W, zero);' \
    'S::store(ct + q + u * W, zero);' gtest:test_index
mutation batch_sink_no_offset index/kernels/batch_avx2.cpp \
    '_mm256_storeu_ps(s + q, _mm256_add_ps(_mm256_loadu_ps(s + q), offset));' \
    '_mm256_storeu_ps(s + q, _mm256_loadu_ps(s + q));' gtest:test_index gtest:test_cohort
mutation search_sink_lane index/IndexProtectedSlerp.cpp \
    'offer(qi + l, row[qi + l], store.ids[r]);' \
    'offer(qi + l, row[qi], store.ids[r]);' gtest:test_index
mutation ivf_sink_ids index/IndexIVFProtectedSlerp.cpp \
    'const idx_t id = ids[j0 + jj];' \
    'const idx_t id = ids[jj];' gtest:test_ivf

# -- half-precision storage (issue 12): conversion, and the per-group constants the kernels
# recompute from the rounded entry
mutation half_round_ties_up index/kernels/half.h \
    'return kept + (rest > halfway || (rest == halfway && (kept & 1u)));' \
    'return kept + (rest >= halfway);' gtest:test_fp16
mutation half_subnormal_scale index/kernels/half.h \
    'float f = static_cast<float>(mantissa) * 5.9604644775390625e-8f;' \
    'float f = static_cast<float>(mantissa) * 1.1920928955078125e-7f;' gtest:test_fp16
mutation kernel_avx2_half_ke index/kernels/scan_avx2.cpp \
    'ke = _mm256_fmadd_ps(mk, me, ke);' \
    'ke = _mm256_fmadd_ps(mk, mk, ke);' gtest:test_fp16
mutation kernel_scalar_half_kmk index/kernels/scan_scalar.cpp \
    'kmk[l] += k * k * m;' \
    'kmk[l] += k * k;' gtest:test_fp16

# -- scheme
mutation scheme_no_lower_clamp plugin/scheme.cpp \
    'if (c < kAntipodalCos) {' \
    'if (c < -1.0) {' $SCHEME_TESTS
mutation scheme_swap_sin_weights plugin/scheme.cpp \
    'return {std::sin((1.0 - t) * theta) / s, std::sin(t * theta) / s, clamped};' \
    'return {std::sin(t * theta) / s, std::sin((1.0 - t) * theta) / s, clamped};' $SCHEME_TESTS
mutation scheme_group_norm_dropped plugin/scheme.cpp \
    'og[j] = static_cast<float>(xg[j] * inv);' \
    'og[j] = static_cast<float>(xg[j] * inv * inv);' $SCHEME_TESTS
mutation scheme_t_minus_importance_sign plugin/scheme.cpp \
    'p.t - w[g] : p.t;' \
    'p.t + w[g] : p.t;' $SCHEME_TESTS
mutation scheme_attention_axis plugin/scheme.cpp \
    'raw[h] += e[h] / G;' \
    'raw[g] += e[h] / G;' $SCHEME_TESTS
mutation scheme_random_drop_off_by_one plugin/scheme.cpp \
    'std::fill(counts, counts + G, p.drop_count);' \
    'std::fill(counts, counts + G, p.drop_count - 1);' $SCHEME_TESTS
mutation scheme_function_truncates plugin/scheme.cpp \
    'counts[g] = static_cast<int>(std::lround(p.drop_max - r * (p.drop_max - p.drop_min)));' \
    'counts[g] = static_cast<int>(p.drop_max - r * (p.drop_max - p.drop_min));' $SCHEME_TESTS
mutation scheme_function_reversed plugin/scheme.cpp \
    'std::lround(p.drop_max - r * (p.drop_max - p.drop_min))' \
    'std::lround(p.drop_min + r * (p.drop_max - p.drop_min))' $SCHEME_TESTS
# The median of the importance-interval drop (np.median: the middle value, or the mean of the
# two middle values for even G).
mutation scheme_median_upper_index plugin/scheme.cpp \
    'const auto upper = sorted.begin() + G / 2;' \
    'const auto upper = sorted.begin() + (G - 1) / 2;' $SCHEME_TESTS
mutation scheme_median_even_mean_dropped plugin/scheme.cpp \
    'if (G % 2 == 0) median =' \
    'if (false) median =' $SCHEME_TESTS
mutation scheme_interval_bound_inclusive plugin/scheme.cpp \
    '!(ratio < p.interval_bounds[i])' \
    '!(ratio <= p.interval_bounds[i])' $SCHEME_TESTS
mutation scheme_interval_ref_without_median plugin/scheme.cpp \
    'double ref = 1.0 / G;' \
    'double ref = 1.0;' $SCHEME_TESTS
mutation scheme_budget_cap_off_by_one plugin/scheme.cpp \
    ': d - 1;' \
    ': d;' $SCHEME_TESTS
mutation scheme_budget_remainder_order plugin/scheme.cpp \
    'return rem[a] > rem[b];' \
    'return rem[a] < rem[b];' $SCHEME_TESTS
mutation scheme_mask_drops_one_fewer plugin/scheme.cpp \
    'for (int i = 0; i < count; ++i) {' \
    'for (int i = 1; i < count; ++i) {' $SCHEME_TESTS
mutation scheme_weighting_ignored plugin/scheme.cpp \
    'p.weighting == Weighting::kImportance ? w[g] :' \
    'p.weighting != Weighting::kImportance ? w[g] :' $SCHEME_TESTS

# -- protect and match
mutation protect_no_antipodal_redraw plugin/protect.cpp \
    'if (dot(e + g * d, group_key(p, key, g), d) >= kAntipodalCos) continue;' \
    'if (dot(e + g * d, group_key(p, key, g), d) >= -2.0) continue;' $SCHEME_TESTS
mutation protect_redraw_not_counted plugin/protect.cpp \
    'resampled.fetch_add(1, std::memory_order_relaxed);' \
    '(void)0;' $SCHEME_TESTS
mutation protect_template_unnormalised plugin/protect.cpp \
    'const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;' \
    'const double inv = ss > 0 ? 1.0 : 0.0;' $SCHEME_TESTS
mutation match_unnormalised plugin/protect.cpp \
    'if (ss > 0) score += weights[g] * num / std::sqrt(ss);' \
    'if (ss > 0) score += weights[g] * num / ss;' $SCHEME_TESTS

# -- parameters
mutation params_slerpface_counts plugin/params.cpp \
    'p.interval_counts = {12, 4};' \
    'p.interval_counts = {12, 3};' $SCHEME_TESTS
mutation params_slerpface_t plugin/params.cpp \
    'p.t = 0.9f;' \
    'p.t = 0.8f;' $SCHEME_TESTS
mutation params_t_upper_bound plugin/params.cpp \
    't >= 0.0f && t <= 1.0f' \
    't >= 0.0f && t < 1.0f' $SCHEME_TESTS
mutation params_distinct_draw_cap plugin/params.cpp \
    'c > group_dim - 1' \
    'c > group_dim' $SCHEME_TESTS

# ---------------------------------------------------------------- running

selected() {
    ((${#SELECT[@]} == 0)) && return 0
    local s
    for s in "${SELECT[@]}"; do
        # shellcheck disable=SC2053
        [[ $1 == $s ]] && return 0
    done
    return 1
}

if ((LIST_ONLY)); then
    for i in "${!NAMES[@]}"; do
        selected "${NAMES[$i]}" || continue
        printf '%-40s %-28s %s\n' "${NAMES[$i]}" "${FILES[$i]}" "${TESTS[$i]}"
    done
    exit 0
fi

count_occurrences() {  # count_occurrences FILE PATTERN
    OLD="$2" perl -0777 -ne '$c = () = /\Q$ENV{OLD}\E/g; print $c' "$1"
}

if ((CHECK_ONLY)); then
    bad=0
    for i in "${!NAMES[@]}"; do
        selected "${NAMES[$i]}" || continue
        n=$(count_occurrences "$ROOT/${FILES[$i]}" "${OLDS[$i]}")
        if [[ "$n" != 1 ]]; then
            printf '%-40s matches %s times in %s\n' "${NAMES[$i]}" "$n" "${FILES[$i]}"
            bad=1
        fi
    done
    ((bad == 0)) && echo "mutation_check: every pattern occurs exactly once"
    exit $bad
fi

RUN=()
for i in "${!NAMES[@]}"; do selected "${NAMES[$i]}" && RUN+=("$i"); done
if ((${#RUN[@]} == 0)); then
    echo "mutation_check: no mutation matches: ${SELECT[*]}" >&2
    exit 2
fi

mkdir -p "$WORK"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
if ((IN_PLACE)); then
    SRC=$ROOT
    BLD="$WORK/build-inplace"
else
    SRC="$WORK/src"
    BLD="$WORK/build"
    # Refresh the private copy: tracked and untracked files that git does not ignore, less
    # the work folder itself; files that vanished from the tree vanish from the copy (CMake
    # globs the test sources). Unchanged files are not touched, so nothing rebuilds needlessly.
    echo "mutation_check: refreshing the source copy in $SRC"
    mkdir -p "$SRC"
    rel_work=${WORK#"$ROOT"/}
    (cd "$ROOT" && git ls-files -co --exclude-standard) | grep -v -e "^$rel_work/" | sort -u |
        while IFS= read -r f; do [[ -f "$ROOT/$f" ]] && printf '%s\n' "$f"; done > "$WORK/manifest.new"
    while IFS= read -r f; do
        if ! cmp -s "$ROOT/$f" "$SRC/$f"; then
            mkdir -p "$(dirname "$SRC/$f")"
            cp "$ROOT/$f" "$SRC/$f"
        fi
    done < "$WORK/manifest.new"
    (cd "$SRC" && find . -type f | sed 's|^\./||' | sort) > "$WORK/manifest.have"
    comm -23 "$WORK/manifest.have" "$WORK/manifest.new" | while IFS= read -r f; do rm -f "$SRC/$f"; done
fi

# Restoring: the file being mutated is copied aside first and put back (with a fresh mtime, so
# that the next build recompiles it) on every exit path.
BACKUP="$WORK/original"
CURRENT=""
restore() {
    if [[ -n "$CURRENT" && -f "$BACKUP" ]]; then
        cat "$BACKUP" > "$SRC/$CURRENT"
        touch "$SRC/$CURRENT"
        rm -f "$BACKUP"
        CURRENT=""
    fi
}
# Builds and tests run in their own sessions (setsid) as background jobs that the script waits
# for: bash runs a trap only between commands, and `wait` is the one it interrupts. On a signal
# the whole job (cmake, make, compilers, a test) is stopped and waited for before the file is
# restored, so that no compiler can write an object of the mutant after the restore.
CHILD=""
run_child() {
    setsid "$@" &
    CHILD=$!
    wait "$CHILD"
    local rc=$?
    CHILD=""
    return $rc
}
on_signal() {
    local file=$CURRENT
    if [[ -n "$CHILD" ]]; then
        kill -TERM -- "-$CHILD" 2> /dev/null
        wait "$CHILD" 2> /dev/null
    fi
    restore
    echo >&3
    echo "mutation_check: interrupted${file:+; $file restored}" >&3
    exit 130
}
exec 3>&2  # the script's own stderr, for the trap (it may run while a command's is redirected)
trap 'restore' EXIT
trap 'on_signal' INT TERM HUP

echo "mutation_check: configuring $BLD"
if ! nice -n 19 cmake -S "$SRC" -B "$BLD" -DCMAKE_BUILD_TYPE=Release -DPSLERP_BUILD_TESTS=ON \
        -DPSLERP_BUILD_BENCH=OFF -DPSLERP_BUILD_EXTRACTOR=OFF -DPSLERP_BUILD_PYTHON=ON \
        > "$LOGS/configure.log" 2>&1; then
    echo "mutation_check: cmake configure failed (see $LOGS/configure.log)" >&2
    exit 2
fi

targets_of() {  # the build targets of a test list
    local t out=()
    for t in $1; do
        case "$t" in
            gtest:*|scalar:*) t=${t#*:}; out+=("${t%%:*}") ;;
            py:*) out+=(_pslerp) ;;
        esac
    done
    printf '%s\n' "${out[@]}" | sort -u | tr '\n' ' '
}

build() {  # build TARGETS LOG
    # shellcheck disable=SC2086
    run_child nice -n 19 cmake --build "$BLD" -j "$JOBS" --target $1 > "$2" 2>&1
}

# run_tests TESTS LOG: builds each test command's target just before running it (a mutant the
# first command kills costs no other build), stops at the first failure. Returns 0 when every
# command passes, 1 when one fails (named in $FAILED), 2 when a target does not build.
FAILED=""
run_tests() {
    local t rest bin filter env built=" "
    : > "$2"
    for t in $1; do
        local target
        target=$(targets_of "$t")
        target=${target% }
        if [[ $built != *" $target "* ]]; then
            echo "== build $target" >> "$2"
            if ! build "$target" "$2.build"; then
                cat "$2.build" >> "$2"
                FAILED="build of $target"
                return 2
            fi
            built+="$target "
        fi
        env=()
        case "$t" in
            gtest:*|scalar:*)
                [[ $t == scalar:* ]] && env=(PSLERP_SIMD=scalar)
                rest=${t#*:}; bin=${rest%%:*}; filter="*"
                [[ $rest == *:* ]] && filter=${rest#*:}
                echo "== $t" >> "$2"
                if ! run_child env -C "$BLD/tests" "${env[@]}" nice -n 19 timeout -k 10 "$LIMIT" "./$bin" \
                        --gtest_filter="$filter" --gtest_brief=1 >> "$2" 2>&1; then
                    FAILED=$t
                    return 1
                fi
                ;;
            py:*)
                rest=${t#py:}; local file=${rest%%:*} kexpr=()
                [[ $rest == *:* ]] && kexpr=(-k "${rest#*:}")
                echo "== $t" >> "$2"
                if ! run_child env -C "$BLD" PYTHONPATH=python nice -n 19 timeout -k 10 "$LIMIT" /usr/bin/python3 \
                        -m pytest -x -q -p no:cacheprovider "${kexpr[@]}" "$SRC/tests/python/$file" >> "$2" 2>&1; then
                    FAILED=$t
                    return 1
                fi
                ;;
        esac
    done
    rm -f "$2.build"
    return 0
}

# The unmutated tree must pass every test used, or nothing can be judged.
ALL_TESTS=$(for i in "${RUN[@]}"; do echo "${TESTS[$i]}"; done | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
echo "mutation_check: building and running the unmutated tests: $ALL_TESTS"
if ! run_tests "$ALL_TESTS" "$LOGS/baseline.log"; then
    echo "mutation_check: the unmutated tree fails $FAILED (see $LOGS/baseline.log): nothing to judge" >&2
    exit 2
fi

RESULTS=()
killed=0; survived=0; stale=0; broken=0
for i in "${RUN[@]}"; do
    name=${NAMES[$i]} file=${FILES[$i]}
    start=$SECONDS
    n=$(count_occurrences "$SRC/$file" "${OLDS[$i]}")
    if [[ "$n" != 1 ]]; then
        RESULTS+=("$(printf '%-40s %-10s %s' "$name" PATTERN "matches $n times in $file: update the table")")
        ((stale++))
        continue
    fi
    cp "$SRC/$file" "$BACKUP"
    CURRENT=$file
    OLD="${OLDS[$i]}" NEW="${NEWS[$i]}" perl -0777 -pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/' "$SRC/$file"
    log="$LOGS/$name.log"
    printf 'mutation_check: %-40s ' "$name"
    run_tests "${TESTS[$i]}" "$log"
    case $? in
        0) status=SURVIVED; detail="passed ${TESTS[$i]}"; ((survived++)) ;;
        1) status=killed; detail="by $FAILED"; ((killed++)) ;;
        *) status=BUILD; detail="the mutant does not compile (see $log)"; ((broken++)) ;;
    esac
    restore
    echo "$status ($((SECONDS - start)) s)"
    RESULTS+=("$(printf '%-40s %-10s %s' "$name" "$status" "$detail")")
done

# Leave the build matching the restored sources.
build "$(targets_of "$ALL_TESTS")" "$LOGS/final-build.log" || true

echo
printf '%-40s %-10s %s\n' MUTATION RESULT DETAIL
printf '%s\n' "${RESULTS[@]}"
echo
echo "mutation_check: ${#RUN[@]} mutations: $killed killed, $survived survived, $stale stale patterns, $broken did not build"
((survived == 0 && stale == 0 && broken == 0))
