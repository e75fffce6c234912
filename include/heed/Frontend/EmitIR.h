// Elaborated Variant -> `attn.variant` op: the one place where both frontends
// meet the dialect.
#ifndef HEED_FRONTEND_EMITIR_H
#define HEED_FRONTEND_EMITIR_H

#include "heed/Frontend/Spec.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace heed {
namespace attn {
class VariantOp;
} // namespace attn

/// Emits `variant` as an attn.variant at the builder's insertion point.
attn::VariantOp emitVariant(mlir::OpBuilder &builder, mlir::Location loc,
                            const spec::Variant &variant);

/// A new module holding only `variant`, loading the dialects it needs.
mlir::OwningOpRef<mlir::ModuleOp> emitVariantModule(mlir::MLIRContext &context,
                                                    const spec::Variant &variant);

/// Registers every dialect heed's IR uses (attn, arith, math, memref, func,
/// scf, vector, llvm) with `registry`.
} // namespace heed

#endif // HEED_FRONTEND_EMITIR_H
