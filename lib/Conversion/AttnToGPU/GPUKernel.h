// What the SIMT GPU kernel (AttnToGPU.cpp) builds on (private to
// lib/Conversion/AttnToGPU):
//
//   GPUKernelLowering    the op, its variant, layout-aware indexing and the
//                        variant's regions inlined as scalar code;
//   lowerKernels         functions holding an attn.attention -> gpu.func
//                        kernels of `gpu.module @heed_gpu`.
//
// The matrix-core kernels lower the tile IR instead (lib/Conversion/TileToGPU).
#ifndef HEED_LIB_CONVERSION_ATTNTOGPU_GPUKERNEL_H
#define HEED_LIB_CONVERSION_ATTNTOGPU_GPUKERNEL_H

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include <memory>

namespace heed::gpu_kernel {

using mlir::Value;

/// What every GPU kernel shares.
class GPUKernelLowering {
public:
  GPUKernelLowering(mlir::OpBuilder &b, attn::AttentionOp op, attn::VariantOp variant)
      : b(b), loc(op.getLoc()), op(op), variant(variant) {}
  virtual ~GPUKernelLowering() = default;

  /// Emits the kernel body at the builder's insertion point.
  virtual mlir::LogicalResult emit() = 0;

protected:
  Value idx(int64_t v) { return mlir::arith::ConstantIndexOp::create(b, loc, v); }
  Value f32(double v) {
    return mlir::arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
  }
  Value i32(int64_t v) { return mlir::arith::ConstantIntOp::create(b, loc, v, 32); }
  /// Logical dim `d` (0 batch, 1 heads, 2 seq, 3 dim) of a rank-4 tensor.
  Value dim(Value t, unsigned d);
  /// Indices of (batch, head, pos, d) in the op's layout.
  llvm::SmallVector<Value> at(Value batch, Value head, Value pos, Value d);
  Value loadF32(Value t, mlir::ValueRange indices);
  void storeF32(Value x, Value t, mlir::ValueRange indices);
  /// Clones `region` with scalars: leading block arguments -> `leading`,
  /// buffers -> the op's buffers; attn.load becomes a bounds-checked load.
  Value inlineRegion(mlir::Region &region, llvm::ArrayRef<Value> leading);

  mlir::OpBuilder &b;
  mlir::Location loc;
  attn::AttentionOp op;
  attn::VariantOp variant;
  Value route; ///< the head's route value (routed variants)
};

/// Turns every function holding one attn.attention into a gpu.func kernel
/// of `gpu.module @heed_gpu` with `workgroup` buffers, its body emitted by
/// `make(...)->emit()`; records the launch shape on the kernel.
mlir::LogicalResult lowerKernels(
    mlir::ModuleOp module, int64_t blockRows, int64_t threads, mlir::TypeRange workgroup,
    llvm::function_ref<std::unique_ptr<GPUKernelLowering>(
        mlir::OpBuilder &, attn::AttentionOp, attn::VariantOp, mlir::gpu::GPUFuncOp)>
        make);

/// The largest head dim of any attention op and its element type (f16 if
/// none): what the workgroup buffers are sized for.
std::pair<int64_t, mlir::Type> widestOperand(mlir::ModuleOp module);

} // namespace heed::gpu_kernel

#endif
