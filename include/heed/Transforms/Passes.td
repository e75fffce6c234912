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

def AttnAnalyzeMask : Pass<"attn-analyze-mask", "mlir::ModuleOp"> {
  let summary = "Derive a block classifier (EMPTY / FULL / PARTIAL) from each mask";
  let description = [{
    Fills the `blocks` region of every `attn.variant` with an abstract
    interpretation of its mask over intervals: given a box of (q, kv) pairs
    (and exact b, h) it yields 0 (EMPTY: the mask is false everywhere on the
    box), 2 (FULL: true everywhere) or 1 (PARTIAL). It is sound by
    construction (each abstract op over-approximates its concrete op) and exact
    for masks built from comparisons of sums/differences of q, kv and
    constants. It also sets `sparsity` on the variant: "dense" (no mask),
    "empty", "closed_form", or "data_dependent" (the mask reads buffers or
    floats, so boxes are PARTIAL unless decided by the rest of the mask).
    The CPU lowering uses the classifier to skip EMPTY blocks and the mask of
    FULL blocks.

    Patch tiling: where the mask reads q and kv only through floor divisions
    and remainders by constants that form a chain of strides (a 2-D or 3-D
    token grid, as the neighborhood masks do), the pass chooses a patch shape
    per tile (`block-q` query tokens, `block-kv` keys) and records it as
    `patch_tiling = {grid = [inner extents], q_patch = [...], kv_patch = [...]}`
    on the variant. The `blocks` region then classifies Cartesian boxes of the
    grid whose corners are `q_lo`/`q_hi` and `kv_lo`/`kv_hi`, and the
    lowering walks tiles as patches. `patch-tiling=false` keeps flat tiles.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::memref::MemRefDialect",
                           "mlir::scf::SCFDialect"];
  let options = [
    Option<"blockQ", "block-q", "int64_t", "16", "query tokens per tile">,
    Option<"blockKV", "block-kv", "int64_t", "16", "keys per KV tile">,
    Option<"patchTiling", "patch-tiling", "bool", "true",
           "tile token grids by multi-dimensional patches where the mask allows">,
  ];
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
