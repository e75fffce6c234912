// How every target finishes a row under the variant's normalization
// (softmax with or without a sink logit, sigmoid) and computes sigmoid
// weights: the arithmetic written once, on f32 scalars or vectors of them.
#ifndef HEED_LIB_CONVERSION_TILECOMMON_NORMALIZE_H
#define HEED_LIB_CONVERSION_TILECOMMON_NORMALIZE_H

#include "mlir/IR/Builders.h"

#include <functional>

namespace heed {

/// e^x or ln x on a target (a polynomial on CPU vectors, math.exp on GPUs).
using UnaryMath = std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::Value)>;

/// math.exp and math.log (what GPU targets use for UnaryMath).
mlir::Value mathExp(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);
mlir::Value mathLog(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);

/// A constant of `type` (f32, or a vector of f32 splatted).
mlir::Value f32Like(mlir::OpBuilder &b, mlir::Location loc, mlir::Type type, double value);

/// What the online softmax takes a row's exponents against when its running
/// max is `m`: m, or 0 while m is -inf (no visible key yet), so that
/// -inf - -inf never makes a NaN (alpha and p are then 0).
mlir::Value exponentBase(mlir::OpBuilder &b, mlir::Location loc, mlir::Value m);

/// What multiplies a row's accumulator and what its lse is.
struct RowFinish {
  mlir::Value scale, lse;
};

/// The end of a row with running max `m` and sum `l`. Softmax: scale 1/l,
/// lse m + ln l; a row with no visible key (l = 0) scales by 0 with lse
/// -inf. With a `sink` logit x (scalar f32, splatted for vectors):
/// m* = max(m, x), c = e^(m - m*), l* = l c + e^(x - m*), scale c / l*,
/// lse m* + ln l* (every exponent <= 0, so nothing overflows). Sigmoid:
/// scale 1, lse NaN (not defined).
RowFinish finishRow(mlir::OpBuilder &b, mlir::Location loc, mlir::Value m, mlir::Value l,
                    mlir::Value sink, bool sigmoid, const UnaryMath &exp,
                    const UnaryMath &log);

/// Split-KV's merge of a row's state (max m, sum l, accumulator acc) with a
/// part's (ms, ls, accs): m' = max(m, ms), and each side scaled by e^(its
/// max - m'), 0 where m' is -inf (nothing seen on either side), so the
/// merged state is (m', l a + ls as, acc a + accs as). Sigmoid has no
/// statistics: a = as = 1 and m' = m.
struct MergeFactors {
  mlir::Value max, mine, theirs; ///< m', a, as
};
MergeFactors mergeFactors(mlir::OpBuilder &b, mlir::Location loc, mlir::Value m, mlir::Value ms,
                          bool sigmoid, const UnaryMath &exp);

/// 1 / (1 + e^-(x + bias)) on f32 scalars or vectors, as e = e^-|z| (z =
/// x + bias): 1 / (1 + e) for z >= 0, e / (1 + e) below, so `exp` only
/// sees exponents <= 0; -inf (a masked score) gives 0, never NaN.
mlir::Value sigmoid(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x, double bias,
                    const UnaryMath &exp);

} // namespace heed

#endif
