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

/// The memref type of a buffer as the variant's regions and the attention op
/// see it: dynamic dims, identity layout; bool is stored as i8.
mlir::MemRefType bufferType(mlir::MLIRContext &context, const spec::BufferDecl &buffer);

/// A new module holding only `variant`, loading the dialects it needs.
mlir::OwningOpRef<mlir::ModuleOp> emitVariantModule(mlir::MLIRContext &context,
                                                    const spec::Variant &variant);

} // namespace heed

#endif // HEED_FRONTEND_EMITIR_H
