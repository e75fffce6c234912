// The attn dialect's ops.
#ifndef HEED_DIALECTS_ATTN_ATTNOPS_H
#define HEED_DIALECTS_ATTN_ATTNOPS_H

#include "dialects/attn/AttnAttrs.h"
#include "dialects/attn/AttnDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.h.inc"

#endif
