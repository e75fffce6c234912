// Typed attributes and enums of the attn dialect: the contracts between
// heed's passes (layout, block classes, what the mask analysis found, the
// tiling a schedule chose, a GPU kernel's launch shape). No pass talks to
// another through strings or dictionaries.
#ifndef HEED_ATTN_ATTRS
#define HEED_ATTN_ATTRS

include "AttnDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Attn_Layout : I32EnumAttr<"Layout", "order of the dims of q, k, v and out", [
    I32EnumAttrCase<"BHSD", 0, "bhsd">,
    I32EnumAttrCase<"BSHD", 1, "bshd">]> {
  let cppNamespace = "::heed::attn";
  let genSpecializedAttr = 0;
}
def Attn_LayoutAttr : EnumAttr<Attn_Dialect, Attn_Layout, "layout"> {
  let summary = "bhsd: [batch, heads, seq, dim]; bshd: [batch, seq, heads, dim]";
  let assemblyFormat = "`<` $value `>`";
}

def Attn_BlockClass : I32EnumAttr<"BlockClass",
    "what a box of (q, kv) pairs is known to be", [
    I32EnumAttrCase<"Empty", 0, "empty">,
    I32EnumAttrCase<"Partial", 1, "partial">,
    I32EnumAttrCase<"Full", 2, "full">]> {
  let cppNamespace = "::heed::attn";
  let genSpecializedAttr = 0;
  let description = [{
    The value a `blocks` classifier yields (as i8): EMPTY, the mask is false
    on every pair of the box (the box is never visited); FULL, true on every
    pair (the mask is not evaluated); PARTIAL, either may hold.
  }];
}

def Attn_Sparsity : I32EnumAttr<"Sparsity", "how a variant's blocks are known", [
    I32EnumAttrCase<"Dense", 0, "dense">,
    I32EnumAttrCase<"Empty", 1, "empty">,
    I32EnumAttrCase<"ClosedForm", 2, "closed_form">,
    I32EnumAttrCase<"DataDependent", 3, "data_dependent">]> {
  let cppNamespace = "::heed::attn";
  let genSpecializedAttr = 0;
}
def Attn_SparsityAttr : EnumAttr<Attn_Dialect, Attn_Sparsity, "sparsity"> {
  let summary = "dense (no mask), empty, closed_form, or data_dependent (reads buffers or floats)";
  let assemblyFormat = "`<` $value `>`";
}

def Attn_Normalization : I32EnumAttr<"Normalization",
    "how a row's attention weights are made from its scores", [
    I32EnumAttrCase<"Softmax", 0, "softmax">,
    I32EnumAttrCase<"Sigmoid", 1, "sigmoid">]> {
  let cppNamespace = "::heed::attn";
  let genSpecializedAttr = 0;
  let description = [{
    softmax: w_j = exp(s_j) / (sum_k exp(s_k) [+ exp(sink)]), the row
    normalized (with a `sink` logit where the variant has one). sigmoid
    (FlashSigmoid): w_j = 1 / (1 + exp(-(s_j + bias))), every weight on its
    own, no row normalization (so no running max and no rescaling).
  }];
}
def Attn_NormalizationAttr : EnumAttr<Attn_Dialect, Attn_Normalization, "normalization"> {
  let summary = "softmax (the default) or sigmoid";
  let assemblyFormat = "`<` $value `>`";
}

def Attn_Side : I32EnumAttr<"Side", "which sequence a tile count is of", [
    I32EnumAttrCase<"Q", 0, "q">,
    I32EnumAttrCase<"KV", 1, "kv">]> {
  let cppNamespace = "::heed::attn";
  let genSpecializedAttr = 0;
}
def Attn_SideAttr : EnumAttr<Attn_Dialect, Attn_Side, "side"> {
  let assemblyFormat = "`<` $value `>`";
}

def Attn_Shape : I32EnumAttr<"Shape", "a run-time size a variant reads", [
    I32EnumAttrCase<"B", 0, "B">,
    I32EnumAttrCase<"H", 1, "H">,
    I32EnumAttrCase<"Hkv", 2, "Hkv">,
    I32EnumAttrCase<"Sq", 3, "Sq">,
    I32EnumAttrCase<"Skv", 4, "Skv">]> {
  let cppNamespace = "::heed::attn";
  let genSpecializedAttr = 0;
}
def Attn_ShapeAttr : EnumAttr<Attn_Dialect, Attn_Shape, "shape"> {
  let assemblyFormat = "`<` $value `>`";
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

class Attn_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Attn_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Attn_GridAttr : Attn_Attr<"Grid", "grid"> {
  let summary = "The token grid a mask reads q and kv through (from the mask analysis)";
  let description = [{
    Tokens lie row-major on a grid: token = sum_k d_k * s_k, with inner
    extents `extents` (s_{k-1} / s_k; the outermost extent follows from the
    sequence length) and s_{n-1} = 1. `residues` lists the dims that are
    dilation residues (a patch keeps one residue of them: NATTEN's dilation
    groups). The variant's `blocks` classifier then classifies Cartesian
    boxes of this grid given by their corner tokens.

    Example: `#attn.grid<[64, 128]>` is a 3-D grid ? x 64 x 128.
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$extents,
                        OptionalArrayRefParameter<"int64_t">:$residues);
  let assemblyFormat = "`<` `[` $extents `]` (`,` `residues` `=` `[` $residues^ `]`)? `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Strides s_0 > ... > s_{n-1} = 1 of the grid's n = extents + 1 dims.
    ::llvm::SmallVector<int64_t> getStrides() const;
    /// Whether dim k is a dilation residue.
    bool isResidue(unsigned k) const;
  }];
}

def Attn_TilingAttr : Attn_Attr<"Tiling", "tiling"> {
  let summary = "How the query and key sequences are cut into tiles (chosen by --attn-choose-tiling)";
  let description = [{
    Flat tiles of consecutive tokens: `#attn.tiling<q = [16], kv = [64]>`.
    Patches of a token grid (2-D or 3-D neighborhoods): `grid` gives its
    inner extents and each side's patch has one side per grid dim, its
    lanes in row-major order, e.g. `#attn.tiling<q = [4, 4], kv = [4, 4],
    grid = [128]>` tiles a ? x 128 grid by 4 x 4 patches. Lanes past the
    grid's edges or past the sequence are holes (masked, never stored).

    The tiling arithmetic (tiles per sequence, a tile's tokens) lives in one
    place, heed/Dialect/TileMath.h, for the IR and for the runtime.
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$q,
                        ArrayRefParameter<"int64_t">:$kv,
                        OptionalArrayRefParameter<"int64_t">:$grid);
  let assemblyFormat = "`<` `q` `=` `[` $q `]` `,` `kv` `=` `[` $kv `]` (`,` `grid` `=` `[` $grid^ `]`)? `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    bool isPatched() const { return !getGrid().empty(); }
    ::llvm::ArrayRef<int64_t> getPatch(Side side) const {
      return side == Side::Q ? getQ() : getKv();
    }
    /// Lanes of a tile of `side`.
    int64_t getTileSize(Side side) const;
    /// Flat tiles of `q` and `kv` tokens.
    static TilingAttr getFlat(::mlir::MLIRContext *ctx, int64_t q, int64_t kv);
  }];
}

def Attn_LaunchAttr : Attn_Attr<"Launch", "launch"> {
  let summary = "The launch shape of a GPU kernel, recorded by its lowering";
  let description = [{
    A grid of (ceil(Sq / block_rows), Hq, B) blocks of `threads` threads,
    with `shared_bytes` of dynamic shared memory (LDS) per block. Where the
    query tiles are patches of a token grid (`grid`: its inner extents,
    `patch`: the patch's sides, block_rows lanes), grid x is the number of
    patches instead (docs/passes.md, "Patch tiling").
  }];
  let parameters = (ins "int64_t":$blockRows, "int64_t":$threads,
                        DefaultValuedParameter<"int64_t", "0">:$sharedBytes,
                        OptionalArrayRefParameter<"int64_t">:$grid,
                        OptionalArrayRefParameter<"int64_t">:$patch);
  let assemblyFormat = [{
    `<` `block_rows` `=` $blockRows `,` `threads` `=` $threads
    (`,` `shared_bytes` `=` $sharedBytes^)?
    (`,` `grid` `=` `[` $grid^ `]`)? (`,` `patch` `=` `[` $patch^ `]`)? `>`
  }];
}

#endif // HEED_ATTN_ATTRS
