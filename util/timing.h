// The one clock and the one median of pslerp's measurements (tools, benchmark drivers, figures).
#pragma once

#include <algorithm>
#include <chrono>
#include <ctime>
#include <vector>

namespace pslerp {

/// Seconds on the monotonic clock (only differences mean anything).
inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// CPU seconds used by the calling thread: stage timings that other load on the machine does
/// not inflate (the extractor's ExtractStats).
inline double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// The median; the mean of the two middle values for an even count; 0 for none.
inline double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

}  // namespace pslerp
