// Target-independent passes on the attn dialect.
#ifndef HEED_TRANSFORMS_PASSES
#define HEED_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def AttnSimplify : Pass<"attn-simplify", "mlir::ModuleOp"> {
  let summary = "Fold and canonicalize the score and mask regions of variants";
  let description = [{
    Runs arith/math folding and canonicalization patterns plus CSE inside every
    `attn.variant`, so later passes see the simplest form of each expression
    (constant parameters folded, `x * 1.0` gone, `true && m` reduced to `m`).
  }];
  let dependentDialects = ["mlir::arith::ArithDialect"];
}

#endif // HEED_TRANSFORMS_PASSES
