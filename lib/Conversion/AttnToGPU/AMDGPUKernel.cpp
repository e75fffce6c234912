// --attn-lower-to-amdgpu: the FlashAttention-2 tile loop (TiledKernel.cpp)
// on AMD matrix cores (MFMA, wave64, f16 or bf16 in, f32 accumulate),
// shapes 32x32x8 (default) or 16x16x16, for gfx90a (MI200) and gfx942
// (MI300).
//
// The kernel computes S^T = K Q^T rather than S = Q K^T: in an MFMA
// accumulator a lane holds one column and M*M/64 rows, so with queries as
// columns each lane owns one query row and its keys, the row statistics
// are mostly in-lane (one or two shuffles finish them), and the S^T
// accumulators are, element for element, the B operand of O^T += V^T P^T
// (no data movement between the two products). A block of 4 waves owns
// 4 M query rows; K tiles of 64 keys are staged in LDS row by row and V
// tiles transposed, rows padded by 4 elements; Q's B operands are loaded
// from global memory once.
//
// MFMA MxMxK operand layouts (AMD's matrix instruction calculator), G =
// 64 / M lane groups, lane l: A[row l%M][k 4 (l/M) .. +4], B[k 4 (l/M) ..
// +4][col l%M], accumulator element i at row (i/4) 4G + 4 (l/M) + i%4,
// col l%M.
#include "heed/Conversion/Passes.h"

#include "GPUKernel.h"

#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace heed {
#define GEN_PASS_DEF_ATTNLOWERTOAMDGPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::AttentionOp;
using heed::attn::VariantOp;

namespace {

using namespace heed::gpu_kernel;

class AMDGPUKernelLowering : public TiledKernelLowering {
public:
  static constexpr int64_t kPad = 4;
  /// Keys per tile by head dim, as on NVIDIA: 64 up to D = 64, else 32
  /// (the S^T accumulators of 64 keys leave too few registers).
  static Shape kernelShape(int64_t m, int64_t headDim) {
    Shape s;
    s.waveSize = 64;
    s.waves = 4;
    s.rowsPerWave = m;
    s.keysPerTile = headDim <= 64 ? 64 : 32;
    s.rowSlots = 1;
    return s;
  }
  AMDGPUKernelLowering(OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel,
                       int64_t m, int64_t width)
      : TiledKernelLowering(b, op, variant, kernel, kernelShape(m, width)), M(m),
        K(4 * (64 / m)),
        E(m * m / 64) {}

protected:
  std::string unsupported() override {
    if (!elt.isF16() && !elt.isBF16())
      return "--attn-lower-to-amdgpu takes f16 or bf16";
    if (D % 16 || Dv % M || D > 128 || Dv > 128)
      return "--attn-lower-to-amdgpu needs head dims that are multiples of 16 (and of the "
             "MFMA size for v), at most 128 so far";
    return "";
  }
  void begin() override {
    bufK = kernel.getWorkgroupAttributions()[0];
    bufVT = kernel.getWorkgroupAttributions()[1];
    col = arith::RemUIOp::create(b, loc, lane, idx(M));
    group4 = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, lane, idx(M)), idx(4));
  }
  Value slotRow(unsigned) override {
    return arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, wave, idx(M)), col);
  }
  /// The lane's query row as D / K B operands of 4 elements (zeros past Sq).
  void loadQ(Value q0) override {
    Value row = arith::AddIOp::create(b, loc, q0, slotRow(0));
    Value in = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, row, seqQ);
    VectorType v4 = operandType();
    for (int64_t kk = 0; kk < D / K; ++kk) {
      Value d = arith::AddIOp::create(b, loc, idx(kk * K), group4);
      auto ifOp = scf::IfOp::create(b, loc, TypeRange{v4}, in, true);
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&ifOp.getThenRegion().front());
      scf::YieldOp::create(
          b, loc,
          vector::LoadOp::create(b, loc, v4, op.getQuery(), at(batch, head, row, d)).getResult());
      b.setInsertionPointToStart(&ifOp.getElseRegion().front());
      scf::YieldOp::create(
          b, loc,
          arith::ConstantOp::create(b, loc, DenseElementsAttr::get(v4, b.getZeroAttr(elt)))
              .getResult());
      qFrag.push_back(ifOp.getResult(0));
    }
  }
  void stageKV(Value kv0, Value) override {
    stageTile(op.getKey(), bufK, {}, headKV, kv0, seqKV, shape.keysPerTile, D);
    stageTile(op.getValue(), bufVT, {}, headKV, kv0, seqKV, shape.keysPerTile, Dv,
              /*transposed=*/true);
  }
  /// S^T = K Q^T: one MxM accumulator per M keys of the tile.
  SmallVector<Value> scores() override {
    SmallVector<Value> acc;
    for (int64_t t = 0; t < shape.keysPerTile / M; ++t) {
      Value c = zeroAcc();
      Value r = arith::AddIOp::create(b, loc, idx(t * M), col);
      for (int64_t kk = 0; kk < D / K; ++kk) {
        Value d = arith::AddIOp::create(b, loc, idx(kk * K), group4);
        Value a = vector::LoadOp::create(b, loc, operandType(), bufK, ValueRange{r, d});
        c = mfma(a, qFrag[kk], c);
      }
      acc.push_back(c);
    }
    return acc;
  }
  SmallVector<Element> scoreElements(ArrayRef<Value> acc) override { return rowsOf(acc); }
  /// The lanes holding a query row: l, l + M, ... (a column of the tile).
  Value rowReduce(Value x, bool max) override {
    for (int64_t offset = M; offset < 64; offset *= 2) {
      Value other = gpu::ShuffleOp::create(b, loc, x, i32(offset), i32(64), gpu::ShuffleMode::XOR)
                        .getShuffleResult();
      x = max ? Value(arith::MaximumFOp::create(b, loc, x, other))
              : Value(arith::AddFOp::create(b, loc, x, other));
    }
    return x;
  }
  SmallVector<Value> zeroOutput() override { return SmallVector<Value>(Dv / M, zeroAcc()); }
  Value scaleRows(Value acc, ArrayRef<Value> perSlot) override {
    return arith::MulFOp::create(
        b, loc, acc, vector::BroadcastOp::create(b, loc, accType(), perSlot[0]));
  }
  /// O^T += V^T P^T, K keys per MFMA: the B operand for keys [K j, K j + K)
  /// of key tile t is elements 4 j .. 4 j + 3 of S^T accumulator t.
  void accumulatePV(ArrayRef<Value> p, MutableArrayRef<Value> o) override {
    for (int64_t step = 0; step < shape.keysPerTile / K; ++step) {
      int64_t t = step / (M / K), j = step % (M / K);
      SmallVector<Value> parts;
      for (int64_t e = 0; e < 4; ++e)
        parts.push_back(arith::TruncFOp::create(b, loc, elt, p[t * E + 4 * j + e]));
      Value bOp = vector::FromElementsOp::create(b, loc, operandType(), parts);
      Value key = arith::AddIOp::create(b, loc, idx(step * K), group4);
      for (int64_t dt = 0; dt < Dv / M; ++dt) {
        Value dv = arith::AddIOp::create(b, loc, idx(dt * M), col);
        Value a = vector::LoadOp::create(b, loc, operandType(), bufVT, ValueRange{dv, key});
        o[dt] = mfma(a, bOp, o[dt]);
      }
    }
  }
  SmallVector<Element> outputElements(ArrayRef<Value> o) override { return rowsOf(o); }
  Value ownsRowStats() override {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, lane, idx(M));
  }

private:
  VectorType operandType() { return VectorType::get({4}, elt); }
  VectorType accType() { return VectorType::get({E}, b.getF32Type()); }
  Value zeroAcc() {
    return arith::ConstantOp::create(b, loc,
                                     DenseElementsAttr::get(accType(), b.getF32FloatAttr(0)));
  }
  /// Accumulator elements: tile t's element i is at row t M + (i/4) 4G +
  /// 4 (l/M) + i%4 (a key, or a value dim) of the lane's query column.
  SmallVector<Element> rowsOf(ArrayRef<Value> acc) {
    SmallVector<Element> out;
    for (auto [t, c] : llvm::enumerate(acc))
      for (int64_t i = 0; i < E; ++i) {
        int64_t fixed = int64_t(t) * M + (i / 4) * K + i % 4;
        out.push_back({vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i}), 0,
                       arith::AddIOp::create(b, loc, idx(fixed), group4)});
      }
    return out;
  }
  Value mfma(Value a, Value bOp, Value c) {
    return amdgpu::MFMAOp::create(b, loc, accType(), M, M, K, /*blocks=*/1, a, bOp, c);
  }

  const int64_t M, K, E; ///< MFMA M = N, K; accumulator elements per lane
  Value bufK, bufVT;     ///< LDS: K tile [keys][D], V tile transposed [Dv][keys]
  Value col, group4;     ///< l % M, 4 (l / M)
  SmallVector<Value> qFrag;
};

struct AttnLowerToAMDGPUPass : heed::impl::AttnLowerToAMDGPUBase<AttnLowerToAMDGPUPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (mfma != 32 && mfma != 16) {
      module.emitError() << "--attn-lower-to-amdgpu: mfma must be 32 (32x32x8) or 16 "
                            "(16x16x16), not "
                         << mfma.getValue();
      return signalPassFailure();
    }
    auto [width, elt] = widestOperand(module);
    // The LDS tiles are sized for the widest head dim, and so is the tile.
    TiledKernelLowering::Shape shape = AMDGPUKernelLowering::kernelShape(mfma, width);
    auto space = gpu::AddressSpaceAttr::get(module.getContext(), gpu::AddressSpace::Workgroup);
    auto lds = [&](int64_t rows, int64_t cols) {
      return MemRefType::get({rows, cols + AMDGPUKernelLowering::kPad}, elt,
                             MemRefLayoutAttrInterface{}, space);
    };
    int64_t m = mfma, w = width;
    auto make = [m, w](OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel) {
      return std::unique_ptr<GPUKernelLowering>(
          std::make_unique<AMDGPUKernelLowering>(b, op, variant, kernel, m, w));
    };
    if (failed(lowerKernels(module, shape.blockRows(), shape.threads(),
                            TypeRange{lds(shape.keysPerTile, width), lds(width, shape.keysPerTile)},
                            make)))
      signalPassFailure();
  }
};

} // namespace
