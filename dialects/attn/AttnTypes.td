// Types of the attn dialect's tile level: tiles (the values the tile ops
// compute on) and spans (which tokens a tile's rows or keys are).
#ifndef HEED_ATTN_TYPES
#define HEED_ATTN_TYPES

include "AttnDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Attn_TileRole : I32EnumAttr<"TileRole", "what a tile holds in the attention loop", [
    I32EnumAttrCase<"Q", 0, "q">,
    I32EnumAttrCase<"K", 1, "k">,
    I32EnumAttrCase<"V", 2, "v">,
    I32EnumAttrCase<"S", 3, "s">,
    I32EnumAttrCase<"Acc", 4, "acc">,
    I32EnumAttrCase<"Row", 5, "row">,
    I32EnumAttrCase<"Col", 6, "col">]> {
  let cppNamespace = "::heed::attn";
  let genSpecializedAttr = 0;
  let description = [{
    q: query rows x head dim; k, v: keys x head dim; s: query rows x keys
    (scores, then probabilities); acc: query rows x value dim (the output
    accumulator); row: one value per query row (running max, running sum,
    rescale factors); col: one value per column of a transposed score tile
    (the backward's key-major blocks: lse and delta of their query
    columns). The role, not a layout, is what the IR says: each
    target's type converter maps (shape, element type, role) to its own
    representation (memrefs and vectors on the CPU, per-lane fragments on
    matrix cores), as Triton's layouts do, so every target lowers the same
    tile IR.
  }];
}

class Attn_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Attn_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

def Attn_TileType : Attn_Type<"Tile", "tile"> {
  let summary = "A tile of the attention loop: a value of static shape and a role";
  let description = [{
    `!attn.tile<16x64xbf16, q>`: a rank-1 (`row`) or rank-2 tile with value
    semantics. q/k/v tiles hold the storage type, acc/row/col tiles f32, s
    tiles f32 (or, narrowed by `attn.tile.convert` for P V's product, f16 or
    bf16).
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$shape, "::mlir::Type":$elementType,
                        "TileRole":$role);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRows() const { return getShape()[0]; }
    int64_t getCols() const { return getShape().size() > 1 ? getShape()[1] : 1; }
  }];
}

def Attn_SpanType : Attn_Type<"Span", "span"> {
  let summary = "Which tokens the lanes of a tile are";
  let description = [{
    `!attn.span<16>`: for each of 16 lanes (a tile's query rows or keys), its
    token in the sequence, or a hole (past the sequence, past a grid's edge,
    or past a gated head's routed rows). Made by `attn.tile.span` or
    `attn.tile.routed_span`; read by the ops that touch tokens.
  }];
  let parameters = (ins "int64_t":$size);
  let assemblyFormat = "`<` $size `>`";
}

def Attn_AnyTile : Type<CPred<"::llvm::isa<::heed::attn::TileType>($_self)">, "attn tile">;
// A tile of one role; an s tile holds f32 (scores, probabilities computed on).
class Attn_TileOf<string role> : Type<
    CPred<"::llvm::isa<::heed::attn::TileType>($_self) && "
          "::llvm::cast<::heed::attn::TileType>($_self).getRole() == ::heed::attn::TileRole::" # role #
          !if(!eq(role, "S"),
              " && ::llvm::cast<::heed::attn::TileType>($_self).getElementType().isF32()", "")>,
    "attn tile of role " # role # !if(!eq(role, "S"), " (f32)", "")>;
// An s tile of f32, or of probabilities narrowed to a 16-bit type for a
// product (attn.tile.convert; attn.tile.pv's operand).
def Attn_ProbsTile : Type<
    CPred<"::llvm::isa<::heed::attn::TileType>($_self) && "
          "::llvm::cast<::heed::attn::TileType>($_self).getRole() == ::heed::attn::TileRole::S">,
    "attn tile of role S">;

#endif // HEED_ATTN_TYPES
