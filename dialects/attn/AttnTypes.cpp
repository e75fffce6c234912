// The attn dialect's tile-level types: registration, syntax, verifiers.
#include "dialects/attn/AttnTypes.h"
#include "dialects/attn/AttnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace heed::attn;

#include "dialects/attn/AttnTileEnums.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/attn/AttnTypes.cpp.inc"

void AttnDialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/attn/AttnTypes.cpp.inc"
      >();
}

// !attn.tile<16x64xbf16, q>
Type TileType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  Type element;
  std::string role;
  if (parser.parseLess() || parser.parseDimensionList(shape, /*allowDynamic=*/false) ||
      parser.parseType(element) || parser.parseComma() || parser.parseKeywordOrString(&role) ||
      parser.parseGreater())
    return {};
  std::optional<TileRole> r = symbolizeTileRole(role);
  if (!r) {
    parser.emitError(parser.getCurrentLocation(), "unknown tile role '") << role << "'";
    return {};
  }
  return getChecked([&] { return parser.emitError(parser.getNameLoc()); },
                    parser.getContext(), shape, element, *r);
}

void TileType::print(AsmPrinter &printer) const {
  printer << "<";
  for (int64_t d : getShape())
    printer << d << "x";
  printer << getElementType() << ", " << stringifyTileRole(getRole()) << ">";
}

LogicalResult TileType::verify(function_ref<InFlightDiagnostic()> emitError,
                               ArrayRef<int64_t> shape, Type element, TileRole role) {
  size_t rank = role == TileRole::Row || role == TileRole::Col ? 1 : 2;
  if (shape.size() != rank)
    return emitError() << "a tile of role '" << stringifyTileRole(role) << "' has rank " << rank;
  for (int64_t d : shape)
    if (d < 1 || d > 4096)
      return emitError() << "tile dims must be in [1, 4096]";
  // s tiles: f32, or probabilities narrowed for a product (attn.tile.convert).
  bool storage = role == TileRole::Q || role == TileRole::K || role == TileRole::V ||
                 role == TileRole::S;
  if (storage ? !(element.isF32() || element.isF16() || element.isBF16()) : !element.isF32())
    return emitError() << "a tile of role '" << stringifyTileRole(role) << "' holds "
                       << (storage ? "f32, f16 or bf16" : "f32");
  return success();
}
