// The AVX2 + FMA copy of the HOG detector (hog_detector_body.h). Compiled with -mavx2 -mfma for
// this file only; make_hog_detector_avx2() (hog_detector.cpp) calls it only when the CPU reports
// both. dlib's namespace is renamed here (see hog_detector_body.h): its templates compiled
// for AVX2 must not be merged with the baseline's by the linker. dlib's link-time version check
// (test_for_odr_violations.h) names a symbol in dlib's namespace: it is skipped here, and made
// by the baseline copy. What this file still shares with others (a few std::string and
// std::stringbuf members, inlined where used) had no VEX instruction when checked with objdump
// (GCC 12), so whichever copy the linker keeps runs on any x86-64.
#define DLIB_TEST_FOR_ODR_VIOLATIONS_H_
#define dlib pslerp_dlib_avx2
#define PSLERP_HOG_FACTORY make_hog_detector_avx2_unchecked
#include "extractor/hog_detector_body.h"
