// Both indexes used from many threads at once (issue 15.1): searches, range searches and
// verifications running beside adds and removals, concurrent adds, de-duplication that
// enrols, merges in opposite directions; and the lock itself (SharedMutex), whose readers and
// writers must both get in while the other side keeps it busy. Concurrent answers are
// compared with sequential ones, also when every call brings its own parameters (k, radius,
// nprobe, max_codes, a selector). Every test runs under a watchdog: a deadlock or starvation
// aborts the binary with a message instead of hanging the suite.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>

#include "index/IndexIVFProtectedSlerp.h"
#include "index/IndexProtectedSlerp.h"
#include "index/dedup.h"
#include "index/factory.h"
#include "util/threads.h"
#include "index/index_io.h"
#include "tests/cpp/test_util.h"

namespace pslerp {
namespace {

using testing_util::Answers;
using testing_util::answers;
using testing_util::random_features;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kDim = 32;  // 4 groups of 8: small, so that many rounds fit in a test
constexpr seconds kLimit{180};

/// Aborts the binary when the scope it guards has not ended within `limit`.
class Watchdog {
  public:
    Watchdog(const char* what, seconds limit) : thread_([this, what, limit] {
          std::unique_lock<std::mutex> l(m_);
          if (!cv_.wait_for(l, limit, [this] { return done_; })) {
              std::fprintf(stderr, "test_threads: '%s' did not finish within %lld s (deadlock or starvation)\n", what,
                           static_cast<long long>(limit.count()));
              std::abort();
          }
      }) {}
    ~Watchdog() {
        {
            std::lock_guard<std::mutex> l(m_);
            done_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;  // last: starts once the members above exist
};

/// Runs every body in its own thread and joins them; an exception in a thread fails the test.
void run_threads(const std::vector<std::function<void()>>& bodies) {
    std::mutex m;
    std::vector<std::string> errors;
    std::vector<std::thread> threads;
    for (const auto& body : bodies) {
        threads.emplace_back([&, body] {
            try {
                body();
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> l(m);
                errors.push_back(e.what());
            }
        });
    }
    for (auto& t : threads) t.join();
    for (const auto& e : errors) ADD_FAILURE() << "a thread threw: " << e;
}

/// A seeded index of `factory` (trained when it needs it) holding n features under ids 0..n-1.
std::unique_ptr<faiss::Index> make_index(const std::string& factory, int64_t n, uint64_t seed) {
    auto index = index_factory(kDim, factory);
    protected_of(*index).set_seed(seed);
    if (!index->is_trained) {
        const auto t = random_features(400, kDim, seed + 1000);
        index->train(400, t.data());
    }
    const auto x = random_features(n, kDim, seed);
    std::vector<idx_t> ids(n);
    std::iota(ids.begin(), ids.end(), 0);
    index->add_with_ids(n, x.data(), ids.data());
    return index;
}

class Threads : public ::testing::TestWithParam<const char*> {};

// A frozen index answers concurrent calls exactly as it answers them one at a time.
TEST_P(Threads, ConcurrentReadsEqualSequentialOnes) {
    Watchdog dog("ConcurrentReadsEqualSequentialOnes", kLimit);
    const auto index = make_index(GetParam(), 600, 3);
    const int64_t nq = 24;
    const auto q = random_features(nq, kDim, 3);  // the first 24 enrolled features
    std::vector<idx_t> ids(nq);
    std::iota(ids.begin(), ids.end(), 0);
    const Answers want = answers(*index, q, nq, 10, 0.3f, nullptr, &ids);
    // The IVF's query-by-query path (max_codes) as well.
    faiss::SearchParametersIVF by_query;
    by_query.nprobe = 8;
    by_query.max_codes = 100000;
    const bool ivf = dynamic_cast<const IndexIVFProtectedSlerp*>(index.get()) != nullptr;
    const Answers want_by_query = ivf ? answers(*index, q, nq, 10, 0.3f, &by_query, &ids) : want;

    std::atomic<int64_t> compared{0};
    std::vector<std::function<void()>> readers;
    for (int t = 0; t < 8; ++t) {
        readers.emplace_back([&, t] {
            for (int i = 0; i < 12; ++i) {
                if (ivf && (t + i) % 2 == 1) {
                    EXPECT_TRUE(answers(*index, q, nq, 10, 0.3f, &by_query, &ids) == want_by_query);
                } else {
                    EXPECT_TRUE(answers(*index, q, nq, 10, 0.3f, nullptr, &ids) == want);
                }
                EXPECT_TRUE(protected_of(*index).contains(idx_t(i)));
                EXPECT_FALSE(protected_of(*index).contains(idx_t(100000 + i)));
                ++compared;
            }
        });
    }
    run_threads(readers);
    EXPECT_EQ(compared.load(), 8 * 12);
}

/// One reading call's parameters: k, radius, the probes and ids it uses, and its search
/// parameters (nprobe for the IVF, a selector, FAISS's max_codes path).
struct ReadConfig {
    idx_t k;
    float radius;
    int64_t first, nq;  // probes q[first, first + nq)
    size_t nprobe;      // IVF only; 0: the index's own (4 when other IVF parameters are set)
    size_t max_codes;   // IVF only; 0: the batched path
    bool select;        // restrict to even ids
};

struct ConfigParams {
    std::unique_ptr<faiss::IDSelector> even;
    std::unique_ptr<faiss::SearchParameters> sp;
};

/// Even ids, by a selector FAISS does not special-case.
struct EvenIds : faiss::IDSelector {
    bool is_member(idx_t id) const override { return id % 2 == 0; }
};

ConfigParams params_of(const ReadConfig& c, bool ivf) {
    ConfigParams p;
    if (c.select) p.even = std::make_unique<EvenIds>();
    if (ivf) {
        if (c.nprobe == 0 && c.max_codes == 0 && !c.select) return p;
        auto sp = std::make_unique<faiss::SearchParametersIVF>();
        sp->nprobe = c.nprobe ? c.nprobe : 4;
        sp->max_codes = c.max_codes;
        sp->sel = p.even.get();
        p.sp = std::move(sp);
    } else if (c.select) {
        p.sp = std::make_unique<faiss::SearchParameters>();
        p.sp->sel = p.even.get();
    }
    return p;
}

// Concurrent search, range_search and verify calls that each use their own parameters (k,
// radius, probes, ids; on the IVF nprobe, max_codes; a selector) answer exactly as the same
// calls made one at a time: a call's parameters never leak into another's, and the index's own
// nprobe is left alone.
TEST_P(Threads, ConcurrentCallsWithTheirOwnParametersEqualSequentialOnes) {
    Watchdog dog("ConcurrentCallsWithTheirOwnParametersEqualSequentialOnes", kLimit);
    const auto index = make_index(GetParam(), 700, 13);
    auto* ivf = dynamic_cast<IndexIVFProtectedSlerp*>(index.get());
    if (ivf) ivf->nprobe = 2;
    const int64_t nprobes = 40;
    const auto q = random_features(nprobes, kDim, 13);  // the first 40 enrolled features
    const std::vector<ReadConfig> configs = {
            {1, 0.9f, 0, 40, 0, 0, false},   {5, 0.3f, 3, 17, 1, 0, false},  {17, 0.2f, 10, 30, 8, 0, false},
            {64, 0.5f, 0, 1, 3, 0, false},   {9, 0.25f, 5, 35, 6, 0, true},  {3, 0.4f, 20, 20, 8, 200, false},
            {700, -2.0f, 7, 2, 8, 0, false}, {2, 0.35f, 1, 39, 0, 0, true},  {12, 0.3f, 11, 9, 5, 0, false},
    };
    // Sequential answers first. verify: probe i against id (first + 3 i) % 700; verify_identity:
    // every probe against the ids first .. first + 4.
    struct Want {
        Answers a;
        std::vector<float> identity;
    };
    auto run_config = [&](const ReadConfig& c) {
        const ConfigParams p = params_of(c, ivf != nullptr);
        std::vector<float> probes(q.begin() + c.first * kDim, q.begin() + (c.first + c.nq) * kDim);
        std::vector<idx_t> ids(c.nq);
        for (int64_t i = 0; i < c.nq; ++i) ids[i] = (c.first + 3 * i) % 700;
        Want w;
        w.a = answers(*index, probes, c.nq, c.k, c.radius, p.sp.get(), &ids);
        std::vector<idx_t> who(5);
        std::iota(who.begin(), who.end(), c.first);
        for (int64_t i = 0; i < c.nq; ++i) {
            w.identity.push_back(protected_of(*index).verify_identity(probes.data() + i * kDim, 5, who.data()));
        }
        return w;
    };
    std::vector<Want> want;
    for (const auto& c : configs) want.push_back(run_config(c));
    // The configurations differ in what they answer (else the comparison proves little).
    for (size_t a = 0; a < configs.size(); ++a) {
        for (size_t b = a + 1; b < configs.size(); ++b) EXPECT_FALSE(want[a].a == want[b].a) << a << " " << b;
    }
    if (ivf) {
        // nprobe matters: the same k and probes at nprobe 1 and 8 give other answers.
        ReadConfig one = configs[2], eight = configs[2];
        one.nprobe = 1;
        EXPECT_FALSE(run_config(one).a == run_config(eight).a);
    }

    std::vector<std::function<void()>> bodies;
    std::atomic<int64_t> compared{0};
    for (int t = 0; t < 8; ++t) {
        bodies.emplace_back([&, t] {
            for (int r = 0; r < 3; ++r) {
                for (size_t j = 0; j < configs.size(); ++j) {
                    const size_t c = (j * 5 + size_t(t) + size_t(r)) % configs.size();
                    const Want got = run_config(configs[c]);
                    EXPECT_TRUE(got.a == want[c].a) << "thread " << t << " config " << c;
                    EXPECT_EQ(got.identity, want[c].identity) << "thread " << t << " config " << c;
                    ++compared;
                }
            }
        });
    }
    run_threads(bodies);
    EXPECT_EQ(compared.load(), int64_t(8 * 3 * configs.size()));
    if (ivf) EXPECT_EQ(ivf->nprobe, 2u) << "per-call parameters changed the index's nprobe";
}

// Readers keep getting right answers about entries that stay while writers add and remove
// others (enough rows for the exhaustive index to compact itself meanwhile).
TEST_P(Threads, ReadersSeeStableEntriesWhileWritersChurn) {
    Watchdog dog("ReadersSeeStableEntriesWhileWritersChurn", kLimit);
    const int64_t stable = 200;
    auto index = make_index(GetParam(), stable, 5);
    const ProtectedIndex& pi = protected_of(*index);
    const auto q = random_features(stable, kDim, 5);  // the stable entries' own features
    std::vector<idx_t> ids(stable);
    std::iota(ids.begin(), ids.end(), 0);
    std::vector<float> want_scores(stable);
    pi.verify_batch(stable, q.data(), ids.data(), want_scores.data());

    const int writers = 2, rounds = 8, batch = 300;
    std::atomic<int> writers_left{writers};
    std::vector<std::function<void()>> bodies;
    for (int w = 0; w < writers; ++w) {
        bodies.emplace_back([&, w] {
            std::vector<idx_t> previous;
            for (int r = 0; r < rounds; ++r) {
                const auto x = random_features(batch, kDim, 100 + w * rounds + r);
                std::vector<idx_t> xids(batch);
                for (int j = 0; j < batch; ++j) xids[j] = 1000000 * (w + 1) + r * batch + j;
                index->add_with_ids(batch, x.data(), xids.data());
                if (!previous.empty()) {
                    faiss::IDSelectorBatch sel(previous.size(), previous.data());
                    EXPECT_EQ(index->remove_ids(sel), previous.size());
                }
                previous = xids;
            }
            --writers_left;
        });
    }
    std::atomic<int64_t> reads{0};
    for (int t = 0; t < 6; ++t) {
        bodies.emplace_back([&, t] {
            int64_t i = t;
            do {  // at least once, then until the writers are done
                const int64_t nq = 8, first = (i * 37) % (stable - nq);
                const float* probes = q.data() + first * kDim;
                std::vector<float> D(nq * 5);
                std::vector<idx_t> I(nq * 5);
                index->search(nq, probes, 5, D.data(), I.data());
                faiss::RangeSearchResult r(nq);
                index->range_search(nq, probes, 0.5f, &r);
                std::vector<float> s(nq);
                pi.verify_batch(nq, probes, ids.data() + first, s.data());
                for (int64_t j = 0; j < nq; ++j) {
                    EXPECT_EQ(I[j * 5], first + j) << "an entry's own feature finds it first";
                    EXPECT_TRUE(std::is_sorted(D.begin() + j * 5, D.begin() + (j + 1) * 5, std::greater<float>()));
                    EXPECT_EQ(s[j], want_scores[first + j]) << "an entry's score does not change";
                    const auto hit = std::find(r.labels + r.lims[j], r.labels + r.lims[j + 1], first + j);
                    EXPECT_NE(hit, r.labels + r.lims[j + 1]);
                }
                EXPECT_TRUE(pi.contains(first));
                ++reads;
                ++i;
            } while (writers_left.load() > 0);
        });
    }
    run_threads(bodies);
    EXPECT_GE(reads.load(), 6);
    // Each writer's last batch stays; everything else it added is gone.
    EXPECT_EQ(index->ntotal, stable + writers * batch);
    for (int w = 0; w < writers; ++w) {
        EXPECT_TRUE(pi.contains(1000000 * (w + 1) + (rounds - 1) * batch));
        EXPECT_FALSE(pi.contains(1000000 * (w + 1)));
    }
}

// add() from several threads at once gives every entry its own id.
TEST_P(Threads, ConcurrentAddsGiveDistinctIds) {
    Watchdog dog("ConcurrentAddsGiveDistinctIds", kLimit);
    auto index = make_index(GetParam(), 0, 7);
    const int threads = 4, rounds = 20, batch = 5;
    std::vector<std::function<void()>> adders;
    for (int t = 0; t < threads; ++t) {
        adders.emplace_back([&, t] {
            for (int r = 0; r < rounds; ++r) {
                const auto x = random_features(batch, kDim, 1 + t * rounds + r);
                index->add(batch, x.data());
            }
        });
    }
    run_threads(adders);
    const int64_t total = threads * rounds * batch;
    EXPECT_EQ(index->ntotal, total);
    EXPECT_EQ(protected_of(*index).next_id(), total);
    for (idx_t id = 0; id < total; ++id) EXPECT_TRUE(protected_of(*index).contains(id)) << id;
}

// Two calls de-duplicating and enrolling the same new people at once enrol them once.
TEST_P(Threads, ConcurrentDedupEnrolsOnce) {
    Watchdog dog("ConcurrentDedupEnrolsOnce", kLimit);
    // Without score normalisation an entry's own feature scores 1 against it, whatever the
    // entry, and at t = 0.7 others score well below: a threshold that only copies reach
    // (cohort normalisation has no such constant).
    auto index = make_index(std::string(GetParam()) + "(norm=none,t=0.7)", 100, 9);
    const auto fresh = random_features(6, kDim, 4321);
    faiss::SearchParametersIVF all;
    all.nprobe = 8;
    const bool ivf = dynamic_cast<IndexIVFProtectedSlerp*>(index.get()) != nullptr;
    std::vector<DedupResult> results(2);
    std::vector<std::function<void()>> bodies;
    for (int t = 0; t < 2; ++t) {
        bodies.emplace_back([&, t] {
            DedupOptions opt;
            opt.threshold = 0.99f;  // an entry's own feature scores about 1
            opt.enroll_unique = true;
            opt.search = ivf ? &all : nullptr;
            results[t] = deduplicate(*index, 6, fresh.data(), opt);
        });
    }
    run_threads(bodies);
    EXPECT_EQ(index->ntotal, 106);
    EXPECT_EQ(results[0].enrolled_ids.size() + results[1].enrolled_ids.size(), 6u);
    for (const auto& r : results) {
        for (idx_t id : r.enrolled_ids) EXPECT_TRUE(protected_of(*index).contains(id));
    }
}

INSTANTIATE_TEST_SUITE_P(Kinds, Threads, ::testing::Values("PSlerp4x8", "IVF8,PSlerp4x8"),
                         [](const auto& info) { return std::string(info.param[0] == 'P' ? "Exhaustive" : "IVF"); });

// a.merge_from(b) and b.merge_from(a) in two threads, while a third copies subsets out of a
// and a fourth searches both: no deadlock, and no entry lost or doubled.
TEST(ThreadsIvf, MergesInOppositeDirections) {
    Watchdog dog("MergesInOppositeDirections", kLimit);
    auto a_owner = make_index("IVF8,PSlerp4x8", 100, 11);
    auto& a = dynamic_cast<IndexIVFProtectedSlerp&>(*a_owner);
    const auto bytes = serialize_index_unsealed(a);  // the same training for b and c
    auto b_owner = deserialize_index(bytes.data(), bytes.size());
    auto c_owner = deserialize_index(bytes.data(), bytes.size());
    auto& b = dynamic_cast<IndexIVFProtectedSlerp&>(*b_owner);
    auto& c = dynamic_cast<IndexIVFProtectedSlerp&>(*c_owner);
    b.reset();
    const auto x = random_features(100, kDim, 12);
    std::vector<idx_t> ids(100);
    std::iota(ids.begin(), ids.end(), 1000);
    b.add_with_ids(100, x.data(), ids.data());
    const auto q = random_features(4, kDim, 11);
    const int rounds = 30;
    std::atomic<int> mergers_left{2};
    run_threads({
            [&] {
                for (int r = 0; r < rounds; ++r) a.merge_from(b, 0);
                --mergers_left;
            },
            [&] {
                for (int r = 0; r < rounds; ++r) b.merge_from(a, 0);
                --mergers_left;
            },
            [&] {
                do {
                    c.reset();
                    a.copy_subset_to(c, 0, 0, 50);
                    EXPECT_LE(c.ntotal, 50);
                } while (mergers_left.load() > 0);
            },
            [&] {
                std::vector<float> D(4 * 3);
                std::vector<idx_t> I(4 * 3);
                do {
                    for (faiss::Index* index : {static_cast<faiss::Index*>(&a), static_cast<faiss::Index*>(&b)}) {
                        index->search(4, q.data(), 3, D.data(), I.data());
                        for (idx_t id : I) EXPECT_TRUE(id == -1 || (id >= 0 && id < 100) || (id >= 1000 && id < 1100));
                    }
                } while (mergers_left.load() > 0);
            },
    });
    EXPECT_EQ(a.ntotal + b.ntotal, 200);
    for (idx_t id : {idx_t(0), idx_t(99), idx_t(1000), idx_t(1099)}) EXPECT_NE(a.contains(id), b.contains(id)) << id;
}

// ---------------------------------------------------------------- the lock itself

// Readers that overlap so that one is always inside do not keep a writer out.
TEST(SharedMutexFairness, WriterGetsInBetweenOverlappingReaders) {
    Watchdog dog("WriterGetsInBetweenOverlappingReaders", kLimit);
    SharedMutex mu;
    std::atomic<bool> stop{false};
    std::atomic<int64_t> reads{0};
    Clock::duration waited{};
    std::vector<std::function<void()>> bodies;
    for (int t = 0; t < 4; ++t) {
        bodies.emplace_back([&, t] {
            std::this_thread::sleep_for(milliseconds(t));  // staggered: the holds overlap
            const auto give_up = Clock::now() + seconds(20);
            while (!stop && Clock::now() < give_up) {
                std::shared_lock<SharedMutex> l(mu);
                std::this_thread::sleep_for(milliseconds(4));
                ++reads;
            }
        });
    }
    bodies.emplace_back([&] {
        std::this_thread::sleep_for(milliseconds(50));
        for (int i = 0; i < 5; ++i) {
            const auto t0 = Clock::now();
            {
                std::unique_lock<SharedMutex> l(mu);
                waited = std::max(waited, Clock::now() - t0);
            }
            std::this_thread::sleep_for(milliseconds(10));
        }
        stop = true;
    });
    run_threads(bodies);
    EXPECT_LT(std::chrono::duration_cast<milliseconds>(waited).count(), 5000)
            << "a writer waited behind readers that kept arriving";
    EXPECT_GT(reads.load(), 0);
}

// Writers that follow each other back to back do not keep a reader out.
TEST(SharedMutexFairness, ReaderGetsInBetweenBackToBackWriters) {
    Watchdog dog("ReaderGetsInBetweenBackToBackWriters", kLimit);
    SharedMutex mu;
    std::atomic<bool> stop{false};
    Clock::duration waited{};
    std::vector<std::function<void()>> bodies;
    for (int t = 0; t < 3; ++t) {
        bodies.emplace_back([&] {
            const auto give_up = Clock::now() + seconds(20);
            while (!stop && Clock::now() < give_up) {
                std::unique_lock<SharedMutex> l(mu);
                std::this_thread::sleep_for(milliseconds(2));
            }
        });
    }
    bodies.emplace_back([&] {
        std::this_thread::sleep_for(milliseconds(50));
        for (int i = 0; i < 5; ++i) {
            const auto t0 = Clock::now();
            {
                std::shared_lock<SharedMutex> l(mu);
                waited = std::max(waited, Clock::now() - t0);
            }
            std::this_thread::sleep_for(milliseconds(5));
        }
        stop = true;
    });
    run_threads(bodies);
    EXPECT_LT(std::chrono::duration_cast<milliseconds>(waited).count(), 5000)
            << "a reader waited behind writers that kept arriving";
}

TEST(SharedMutexFairness, ReadersShareWritersExclude) {
    SharedMutex mu;
    {
        std::shared_lock<SharedMutex> r1(mu);
        EXPECT_TRUE(mu.try_lock_shared());
        EXPECT_FALSE(mu.try_lock());
        mu.unlock_shared();
    }
    {
        std::unique_lock<SharedMutex> w(mu);
        EXPECT_FALSE(mu.try_lock_shared());
        EXPECT_FALSE(mu.try_lock());
    }
    EXPECT_TRUE(mu.try_lock());
    mu.unlock();
}

// std::lock over two locks taken in opposite orders by two threads, as merge_from does.
TEST(SharedMutexFairness, TwoLocksInOppositeOrdersDoNotDeadlock) {
    Watchdog dog("TwoLocksInOppositeOrdersDoNotDeadlock", kLimit);
    SharedMutex m1, m2;
    int64_t counter = 0;
    auto body = [&](SharedMutex& first, SharedMutex& second, bool shared_first) {
        for (int i = 0; i < 2000; ++i) {
            std::unique_lock<SharedMutex> b(second, std::defer_lock);
            if (shared_first) {
                std::shared_lock<SharedMutex> a(first, std::defer_lock);
                std::lock(a, b);
            } else {
                std::unique_lock<SharedMutex> a(first, std::defer_lock);
                std::lock(a, b);
            }
            ++counter;  // guarded by m2, which every thread holds exclusively
        }
    };
    run_threads({[&] { body(m1, m2, false); }, [&] { body(m2, m1, false); }, [&] { body(m1, m2, true); }});
    EXPECT_EQ(counter, 6000);
}

}  // namespace
}  // namespace pslerp

// set_threads (the command line's --threads): OpenMP, and OpenBLAS's own pool where the process
// has OpenBLAS (without it `pslerp bench --threads 1` timed FAISS's batched sgemm on every core).
TEST(SetThreads, OpenMpAndOpenBlas) {
    const int before = omp_get_max_threads();
    using GetFn = int (*)();
    const auto blas_get = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    const int blas_before = blas_get ? blas_get() : 0;
    pslerp::set_threads(1);
    EXPECT_EQ(omp_get_max_threads(), 1);
    if (blas_get) EXPECT_EQ(blas_get(), 1);
    pslerp::set_threads(3);
    EXPECT_EQ(omp_get_max_threads(), 3);
    if (blas_get) EXPECT_EQ(blas_get(), 3);
    if (blas_get) pslerp::set_threads(blas_before);
    omp_set_num_threads(before);
    if (!blas_get) GTEST_SKIP() << "no OpenBLAS in this process: only OpenMP's setting was checked";
}
