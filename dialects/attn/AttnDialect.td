// The attn dialect: attention variants (score/mask regions) and the ops that apply them.
#ifndef HEED_ATTN_DIALECT
#define HEED_ATTN_DIALECT

include "mlir/IR/OpBase.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::heed::attn";
  let summary = "Attention variants: score modifiers, masks and the fused attention op";
  let description = [{
    An `attn.variant` describes an attention variant as two scalar regions over
    the indices (b, h, q, kv): a score modifier and a mask. `attn.attention`
    applies a variant to q, k, v tensors. Passes lower it to a tiled loop with
    online softmax and then to CPU/GPU code.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::math::MathDialect",
                           "::mlir::memref::MemRefDialect"];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
    void registerTypes();
  }];
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

#endif // HEED_ATTN_DIALECT
