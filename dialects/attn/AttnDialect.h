// The attn dialect's C++ declaration.
#ifndef HEED_DIALECTS_ATTN_ATTNDIALECT_H
#define HEED_DIALECTS_ATTN_ATTNDIALECT_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Dialect.h"

#include "dialects/attn/AttnDialect.h.inc"

#endif
