// A float64 interpreter for elaborated spec expressions: the reference that
// compiled kernels are tested against. It shares no code with the compiler.
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

struct EvalPoint {
  int64_t b = 0, h = 0, q = 0, kv = 0;
  double score = 0;
};

/// The language's integer division and remainder: rounding toward -inf, a
/// zero divisor gives 0, INT64_MIN / -1 wraps. Shared by the interpreter and
/// the frontend's constant folding.
int64_t floorDiv(int64_t a, int64_t b);
int64_t floorRem(int64_t a, int64_t b);

/// Evaluates `e` at `point`. Integer and bool results come back as doubles.
/// An out-of-range buffer index sets `*outOfRange` (when non-null) to the
/// 1-based buffer number and reads 0.
double evaluate(const Expr &e, const EvalPoint &point,
                const std::vector<BufferData> &buffers,
                int *outOfRange = nullptr);

} // namespace heed::spec

#endif // HEED_FRONTEND_EVALUATE_H
