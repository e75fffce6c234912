// The attn dialect's enums and attributes (AttnAttrs.td).
#ifndef HEED_DIALECTS_ATTN_ATTNATTRS_H
#define HEED_DIALECTS_ATTN_ATTNATTRS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

#include "dialects/attn/AttnEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/attn/AttnAttrs.h.inc"

namespace heed::attn {
/// The discardable attribute a GPU kernel (gpu.func) carries its launch
/// shape in, an #attn.launch.
inline constexpr llvm::StringLiteral kLaunchAttrName = "attn.launch";
} // namespace heed::attn

#endif
