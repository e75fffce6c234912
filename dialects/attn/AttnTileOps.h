// The attn dialect's tile-level ops (AttnTileOps.td).
#ifndef HEED_DIALECTS_ATTN_ATTNTILEOPS_H
#define HEED_DIALECTS_ATTN_ATTNTILEOPS_H

#include "dialects/attn/AttnAttrs.h"
#include "dialects/attn/AttnDialect.h"
#include "dialects/attn/AttnTypes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialects/attn/AttnTileOps.h.inc"

#endif
