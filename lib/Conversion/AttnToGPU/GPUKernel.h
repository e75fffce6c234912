// What heed's GPU kernels share (private to lib/Conversion/AttnToGPU):
//
//   GPUKernelLowering    the op, its variant, layout-aware indexing and the
//                        variant's regions inlined as scalar code;
//   TiledKernelLowering  the FlashAttention-2 tile loop on matrix cores,
//                        target-neutral: block and wave structure, the KV
//                        range from the mask analysis, score and mask per
//                        accumulator element, the online softmax, the
//                        output and lse. What differs per target (fragment
//                        layouts, staging, the matrix instruction, lane
//                        reductions) is its target interface: the pure
//                        virtual hooks below, implemented once for NVIDIA
//                        (NVGPUKernel.cpp: mma.sync, ldmatrix) and once for
//                        AMD (AMDGPUKernel.cpp: MFMA, LDS), as Triton's
//                        TargetInfo splits its lowerings;
//   lowerKernels         functions holding an attn.attention -> gpu.func
//                        kernels of `gpu.module @heed_gpu`.
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

/// The FlashAttention-2 kernel on matrix cores. A block of `waves` waves
/// owns `waves * rowsPerWave` query rows; the KV sequence is walked in
/// tiles of `keysPerTile` keys staged in workgroup memory. Each lane holds
/// accumulator elements of `rowSlots` distinct query rows; the hooks say
/// which element is which.
class TiledKernelLowering : public GPUKernelLowering {
public:
  struct Shape {
    int64_t waveSize = 32;    ///< lanes per wave (warp)
    int64_t waves = 4;        ///< waves per block
    int64_t rowsPerWave = 16; ///< query rows a wave owns
    int64_t keysPerTile = 64; ///< keys per KV tile
    unsigned rowSlots = 1;    ///< distinct query rows a lane holds
    /// K/V buffers in workgroup memory: 1 (copy, then compute) or 2 (the
    /// next tile's copies run asynchronously while this one is computed).
    int64_t stages = 1;
    int64_t blockRows() const { return waves * rowsPerWave; }
    int64_t threads() const { return waves * waveSize; }
  };
  TiledKernelLowering(mlir::OpBuilder &b, attn::AttentionOp op, attn::VariantOp variant,
                      mlir::gpu::GPUFuncOp kernel, Shape shape)
      : GPUKernelLowering(b, op, variant), kernel(kernel), shape(shape) {}
  mlir::LogicalResult emit() final;

  /// One accumulator element: which of the lane's rows it belongs to and
  /// its column (the key within the KV tile, or the value dim).
  struct Element {
    Value value;
    unsigned slot;
    Value col;
  };

protected:
  // ---- The target interface ------------------------------------------
  /// Why the target cannot lower this op ("" if it can): dtypes, head dims.
  virtual std::string unsupported() = 0;
  /// Lane-dependent values, once, before anything else.
  virtual void begin() = 0;
  /// The block-relative query row of the lane's row `slot`.
  virtual Value slotRow(unsigned slot) = 0;
  /// Q rows [q0, q0 + blockRows) into the wave's operand registers.
  virtual void loadQ(Value q0) = 0;
  /// K and V rows [kv0, kv0 + keysPerTile) into workgroup buffer `stage`.
  /// With one stage the kernel brackets it with barriers; with two, the
  /// copies may be asynchronous and waitKV() waits for them.
  virtual void stageKV(Value kv0, Value stage) = 0;
  virtual void waitKV() {}
  /// S = Q K^T for the wave's rows and the tile's keys: accumulators.
  virtual llvm::SmallVector<Value> scores() = 0;
  /// The elements of `acc` (from scores()), in a fixed order.
  virtual llvm::SmallVector<Element> scoreElements(llvm::ArrayRef<Value> acc) = 0;
  /// Max or sum of `x` over the lanes that hold the same row.
  virtual Value rowReduce(Value x, bool max) = 0;
  /// Zero O accumulators, and each row of `acc` times its slot's factor.
  virtual llvm::SmallVector<Value> zeroOutput() = 0;
  virtual Value scaleRows(Value acc, llvm::ArrayRef<Value> perSlot) = 0;
  /// O += P V, P given per element in scoreElements' order (f32).
  virtual void accumulatePV(llvm::ArrayRef<Value> p, llvm::MutableArrayRef<Value> o) = 0;
  /// The elements of the O accumulators.
  virtual llvm::SmallVector<Element> outputElements(llvm::ArrayRef<Value> o) = 0;
  /// Whether this lane writes lse for its rows (one lane per row).
  virtual Value ownsRowStats() = 0;

  // ---- Shared by the targets -----------------------------------------
  /// Copies rows [row0, row0 + rows) of a [.., S, width] tensor of head
  /// `hd` into `smem` ([prefix..][rows][>= width], zeros past `seq`), 8
  /// elements per thread and step; transposed: into smem [width][>= rows].
  void stageTile(Value global, Value smem, mlir::ValueRange prefix, Value hd, Value row0,
                 Value seq, int64_t rows, int64_t width, bool transposed = false);
  /// The variant's `blocks` classifier on a box (i8: 0 EMPTY, 1 PARTIAL,
  /// 2 FULL), where it needs no buffer summaries; null otherwise.
  Value classify(Value qLo, Value qHi, Value kvLo, Value kvHi);

  mlir::gpu::GPUFuncOp kernel;
  Shape shape;
  int64_t D = 0, Dv = 0;   ///< head dims of q/k and v
  mlir::Type elt;          ///< f16 or bf16
  Value batch, head, headKV, seqQ, seqKV;
  Value tid, lane, wave;
  Value computeStage; ///< the workgroup buffer holding the tile being computed
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
