// The attn dialect's tile-level types (AttnTypes.td): tiles and spans.
#ifndef HEED_DIALECTS_ATTN_ATTNTYPES_H
#define HEED_DIALECTS_ATTN_ATTNTYPES_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Types.h"

#include "dialects/attn/AttnTileEnums.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/attn/AttnTypes.h.inc"

#endif
