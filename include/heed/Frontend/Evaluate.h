// The interpreter of elaborated spec expressions: the language's semantics
// (docs/spec-language.md, "Semantics") executed directly. The frontend folds
// param defaults with it and the float64 reference evaluates the variant's
// expressions with it; it shares no code with the compiler, whose IR emitter
// and mask analysis implement the same rules in MLIR.
#ifndef HEED_FRONTEND_EVALUATE_H
#define HEED_FRONTEND_EVALUATE_H

#include "heed/Frontend/Spec.h"

#include <cstdint>
#include <vector>

namespace heed::spec {

/// A buffer's contents for the interpreter, row-major, widened to double
/// (integers and bools are stored exactly as doubles).
struct BufferData {
  std::vector<int64_t> shape;
  std::vector<double> values;
};

/// The run-time sizes an expression may read (B, H, Hkv, Sq, Skv).
struct EvalShape {
  int64_t batches = 0, heads = 0, headsKV = 0, seqQ = 0, seqKV = 0;
};

struct EvalPoint {
  int64_t b = 0, h = 0, q = 0, kv = 0;
  double score = 0; ///< rounded to f32 where the expression reads it
  EvalShape shape;
};

/// A value of the language: i64 and bool exactly in `i` (bool as 0/1), f32 in
/// `f` (always a float value, widened to double).
struct Scalar {
  int64_t i = 0;
  double f = 0;
};

// The scalar rules, one definition each.

/// i64 division rounding toward -inf; a zero divisor gives 0 and
/// INT64_MIN / -1 wraps to INT64_MIN.
int64_t floorDiv(int64_t a, int64_t b);
/// The remainder of floorDiv: it has the divisor's sign; 0 for a zero divisor
/// and for -1.
int64_t floorRem(int64_t a, int64_t b);
/// f32 -> i64: truncation toward zero, saturating at the i64 range; NaN gives 0.
int64_t toInt64(double f);
/// `v` rounded to the nearest f32 (ties to even), overflowing to +-inf as f32
/// arithmetic does, widened back to double. NaN stays NaN.
double roundToF32(double v);
/// Does the finite number `v` lie beyond the f32 range (round to +-inf)?
bool overflowsF32(double v);

/// Evaluates `e` at `point`. An out-of-range buffer index sets `*outOfRange`
/// (when non-null) to the 1-based buffer number and reads 0.
Scalar evaluateScalar(const Expr &e, const EvalPoint &point,
                      const std::vector<BufferData> &buffers, int *outOfRange = nullptr);

/// Folds `e`, which reads no index, score or buffer (a param's default).
Scalar evaluateConstant(const Expr &e);

/// evaluateScalar as one double: f32 values as they are, i64 and bool
/// converted (an i64 beyond 2^53 rounds).
double evaluate(const Expr &e, const EvalPoint &point,
                const std::vector<BufferData> &buffers,
                int *outOfRange = nullptr);

} // namespace heed::spec

#endif // HEED_FRONTEND_EVALUATE_H
