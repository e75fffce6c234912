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

def ApproximateMath : Pass<"heed-approximate-math"> {
  let summary = "Rewrite math.exp/log/tanh/... into polynomial approximations";
  let description = [{
    Replaces transcendental math ops (on scalars and vectors of f32) by
    MLIR's polynomial approximations, so the CPU code stays vectorized and
    calls no libm function per element.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
                           "mlir::vector::VectorDialect"];
}

#endif // HEED_TRANSFORMS_PASSES
