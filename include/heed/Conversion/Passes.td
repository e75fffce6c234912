// Lowerings of the attn dialect to target code.
#ifndef HEED_CONVERSION_PASSES
#define HEED_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def AttnLowerToCPU : Pass<"attn-lower-to-cpu", "mlir::ModuleOp"> {
  let summary = "Tile attn.attention into a KV-block loop with online softmax on vectors";
  let description = [{
    Replaces each `attn.attention` with loops over work items (batch, head,
    q-block) and, inside, over KV blocks of `block-kv` keys. Per block the
    scores of a query row form one `vector<block-kv x f32>`; the variant's
    score and mask regions are inlined at that tile level, vectorized over the
    keys; the running max, running sum and rescaled accumulator implement the
    online softmax (exponentials in base 2, log2(e) folded into the scores).
    Rows whose keys are all masked produce zeros and lse = -inf. Out-of-range
    buffer reads produce zero and record the buffer number in `status`.
    The referenced variants are erased once no attention op uses them.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect",
    "mlir::memref::MemRefDialect", "mlir::scf::SCFDialect",
    "mlir::vector::VectorDialect"];
  let options = [
    Option<"blockQ", "block-q", "int64_t", "32", "query rows per work item">,
    Option<"blockKV", "block-kv", "int64_t", "16",
           "keys per KV block (the vector width of a score row)">,
  ];
}

#endif // HEED_CONVERSION_PASSES
