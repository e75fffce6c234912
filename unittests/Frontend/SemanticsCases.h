// The table of the spec language's scalar semantics at its edges (wrapping,
// division, conversions, f32 overflow, NaN): expressions of an i64 `x` with the
// value each must give. The constant folder and the interpreter are held to it
// in EvaluateTest, the JIT-compiled CPU kernel in unittests/Compiler.
#ifndef HEED_UNITTESTS_FRONTEND_SEMANTICSCASES_H
#define HEED_UNITTESTS_FRONTEND_SEMANTICSCASES_H

#include "heed/Frontend/Spec.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace heed::spec::semantics {

/// An expected value: its type and, by type, `i` (i64, bool as 0/1) or `f`
/// (f32; NaN means any NaN).
struct Want {
  ScalarType type;
  int64_t i = 0;
  double f = 0;
};
inline Want wantI64(int64_t v) { return {ScalarType::I64, v, 0}; }
inline Want wantBool(bool v) { return {ScalarType::Bool, v ? 1 : 0, 0}; }
inline Want wantF32(double v) { return {ScalarType::F32, 0, v}; }

struct SemanticsCase {
  std::string expr; ///< reads the i64 `x`
  int64_t x;
  Want want;
};

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

inline const std::vector<SemanticsCase> &semanticsCases() {
  const double inf = std::numeric_limits<double>::infinity();
  static const std::vector<SemanticsCase> cases = {
      // i64 arithmetic wraps (two's complement).
      {"x + 1", kMax, wantI64(kMin)},
      {"x - 1", kMin, wantI64(kMax)},
      {"x * 2", int64_t(1) << 62, wantI64(kMin)},
      {"x * x", int64_t(1) << 32, wantI64(0)},
      {"-x", kMin, wantI64(kMin)},
      {"abs(x)", kMin, wantI64(kMin)},
      {"abs(x)", -5, wantI64(5)},
      {"min(x, -x)", kMin, wantI64(kMin)},
      {"max(x, -x)", kMin, wantI64(kMin)},
      {"x + 1 < x", kMax, wantBool(true)},
      // Division floors; by 0 gives 0; by -1 negates (wrapping), its remainder is 0.
      {"x / 2", -7, wantI64(-4)},
      {"x % 3", -7, wantI64(2)},
      {"x / -2", 7, wantI64(-4)},
      {"x % -3", 7, wantI64(-2)},
      {"x / 3", kMin, wantI64(-3074457345618258603)},
      {"x % 3", kMin, wantI64(1)},
      {"x / -1", kMin, wantI64(kMin)},
      {"x % -1", kMin, wantI64(0)},
      {"x / -1", 7, wantI64(-7)},
      {"x / (x - x)", 7, wantI64(0)},
      {"x % (x - x)", 7, wantI64(0)},
      {"x / (x - x - 1)", kMin, wantI64(kMin)},
      {"x % (x - x - 1)", kMin, wantI64(0)},
      {"x / (x - x - 1)", 9, wantI64(-9)},
      // f32 -> i64 truncates toward zero and saturates; NaN gives 0.
      {"i64(f32(x) / 2.0)", -7, wantI64(-3)},
      {"i64(1e30 * f32(x))", 1, wantI64(kMax)},
      {"i64(1e30 * f32(x))", -1, wantI64(kMin)},
      {"i64(1e30 * f32(x) * 1e30)", 1, wantI64(kMax)},
      {"i64(sqrt(f32(x)))", -1, wantI64(0)},
      {"i64(f32(x))", kMax, wantI64(kMax)},
      {"i64(f32(x))", kMin, wantI64(kMin)},
      // i64 -> f32 rounds to nearest, once.
      {"f32(x)", 16777217, wantF32(16777216.0)},
      {"f32(x)", kMax, wantF32(9223372036854775808.0)},
      // f32 arithmetic rounds each result to f32 and overflows to infinity.
      {"f32(x) + 0.1", 0, wantF32(double(0.1f))},
      {"f32(x) / 3.0", 1, wantF32(double(1.0f / 3.0f))},
      {"1e30 * f32(x)", 1000000000, wantF32(inf)},
      {"-1e30 * 1e30 + f32(x)", 0, wantF32(-inf)},
      {"f32(x) * 1e30 * 1e30 * 0.0", 1, wantF32(NAN)},
      {"sqrt(f32(x))", -1, wantF32(NAN)},
      {"f32(x) * 1e30 * 1e30 > 3e38", 1, wantBool(true)},
      {"sqrt(f32(x)) != sqrt(f32(x))", -1, wantBool(true)},
      {"sqrt(f32(x)) == sqrt(f32(x))", -1, wantBool(false)},
      {"max(sqrt(f32(x)), 2.0)", -1, wantF32(2.0)},
      {"exp(f32(x))", 89, wantF32(inf)},
      {"log(f32(x))", 0, wantF32(-inf)},
      {"tanh(f32(x))", 100, wantF32(1.0)},
  };
  return cases;
}

/// `x` as spec text (the smallest i64 has no literal).
inline std::string literal(int64_t x) {
  return x == kMin ? "(-9223372036854775807 - 1)" : std::to_string(x);
}

} // namespace heed::spec::semantics

#endif // HEED_UNITTESTS_FRONTEND_SEMANTICSCASES_H
