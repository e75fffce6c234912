// An scf.if given more results, for the schedule passes that carry values
// out of the branches around a loop (--attn-overlap-softmax's carried tile,
// --attn-persistent-workers' tile counts).
#ifndef HEED_TRANSFORMS_BRANCHRESULTS_H
#define HEED_TRANSFORMS_BRANCHRESULTS_H

#include "mlir/Dialect/SCF/IR/SCF.h"

namespace heed {

/// `branch` rebuilt with one more result per value of `thenValues` and
/// `elseValues` (as many of each; the then and else sides yield them after
/// what they yielded, an else side made where there was none); the old
/// results' uses go to the new op's first results, and `branch` is erased.
mlir::scf::IfOp addBranchResults(mlir::scf::IfOp branch, mlir::ValueRange thenValues,
                                 mlir::ValueRange elseValues);

} // namespace heed

#endif
