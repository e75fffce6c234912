// The accumulator side of NVIDIA's warp-level matrix layouts, shared by the
// mma.sync target (TileToNVGPU) and the wgmma one (TileToHopper): an
// m16n8 accumulator per 8 columns, warp w owning rows [16 w, 16 w + 16) of
// the block, lane l rows l/4 and l/4 + 8, columns 2 (l%4) and 2 (l%4) + 1.
// wgmma's m64nN accumulators are that layout for the 4 warps of a
// warpgroup (PTX ISA, "Register Fragments" of wgmma.mma_async), so both
// targets read, reduce and rescale S and O the same way.
#ifndef HEED_LIB_CONVERSION_TILETONVGPU_WARPFRAGMENTS_H
#define HEED_LIB_CONVERSION_TILETONVGPU_WARPFRAGMENTS_H

#include "../TileToGPU/MatrixCore.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace heed::gpu_tile {

class WarpFragmentTarget : public MatrixCoreTarget {
public:
  using MatrixCoreTarget::MatrixCoreTarget;

  /// The block of a query tile read off the kernel (`waves` holds its rows):
  /// warps of 16 rows, two row slots per lane.
  static void completeShape(KernelShape &shape) {
    int64_t rows = shape.waves;
    shape.waveSize = 32;
    shape.rowsPerWave = 16;
    shape.waves = std::max<int64_t>(rows / 16, 1);
    shape.rowSlots = 2;
  }

  /// 2^x as one ex2.approx.ftz.f32 (MUFU.EX2), as FlashAttention's fast-math
  /// build has it: math.exp2 becomes libdevice's __nv_exp2f, the non-ftz
  /// ex2.approx with a subnormal fix-up around it. x is a softmax exponent
  /// (<= 0): a weight below 2^-126 flushed to 0 changes no sum.
  mlir::Value exp2(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x) const override {
    return mlir::LLVM::CallIntrinsicOp::create(b, loc, b.getF32Type(),
                                               b.getStringAttr("llvm.nvvm.ex2.approx.ftz.f"),
                                               mlir::ValueRange{x})
        .getResult(0);
  }

  /// Accumulators of 8-column n-tiles.
  std::pair<mlir::VectorType, int64_t> accumulatorFragment(mlir::MLIRContext *ctx) const override {
    return {cType(ctx), 8};
  }

  Value slotRow(OpBuilder &b, Location loc, unsigned slot) const override {
    Value rowInWarp = mlir::arith::DivUIOp::create(b, loc, laneId(b, loc), index(b, loc, 4));
    return mlir::arith::AddIOp::create(
        b, loc, warpRow(b, loc),
        mlir::arith::AddIOp::create(b, loc, rowInWarp, index(b, loc, 8 * slot)));
  }

  /// The elements of m16n8 accumulators, n-tile by n-tile: (row slot i,
  /// column 8 n + 2 (l%4) + j).
  llvm::SmallVector<Element> elements(OpBuilder &b, Location loc,
                                      mlir::ValueRange acc) const override {
    Value colPair = mlir::arith::MulIOp::create(
        b, loc, mlir::arith::RemUIOp::create(b, loc, laneId(b, loc), index(b, loc, 4)),
        index(b, loc, 2));
    llvm::SmallVector<Element> out;
    for (auto [n, c] : llvm::enumerate(acc))
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 2; ++j)
          out.push_back(
              {mlir::vector::ExtractOp::create(b, loc, c, llvm::ArrayRef<int64_t>{i, j}),
               unsigned(i),
               mlir::arith::AddIOp::create(b, loc, index(b, loc, int64_t(n) * 8 + j), colPair)});
    return out;
  }

  /// The quad: lanes 4 (l/4) .. 4 (l/4) + 3.
  Value rowReduce(OpBuilder &b, Location loc, Value x, bool max) const override {
    return xorReduce(b, loc, x, 1, 4, 32, max);
  }
  int64_t rowLanes() const override { return 4; }
  Value rowLane(OpBuilder &b, Location loc) const override {
    return mlir::arith::RemUIOp::create(b, loc, laneId(b, loc), index(b, loc, 4));
  }
  Value scaleRows(OpBuilder &b, Location loc, Value acc,
                  llvm::ArrayRef<Value> perSlot) const override {
    Value factors = mlir::vector::FromElementsOp::create(
        b, loc, cType(b.getContext()),
        mlir::ValueRange{perSlot[0], perSlot[0], perSlot[1], perSlot[1]});
    return mlir::arith::MulFOp::create(b, loc, acc, factors);
  }
  /// A col tile: columns 8 n + 2 (l%4) + j of each n-tile, j = 0, 1.
  int64_t columnsPerLane(int64_t count) const override { return count / 4; }
  unsigned columnOf(unsigned e) const override { return (e / 4) * 2 + e % 2; }
  llvm::SmallVector<Value> loadColumns(OpBuilder &b, Location loc, Value tensor, Value batch,
                                       Value head, const QueryRows &cols,
                                       int64_t count) const override {
    Value colPair = mlir::arith::MulIOp::create(
        b, loc, mlir::arith::RemUIOp::create(b, loc, laneId(b, loc), index(b, loc, 4)),
        index(b, loc, 2));
    Value zero = mlir::arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
    llvm::SmallVector<Value> out;
    if (cols.flat()) {
      // Flat columns: tensor[batch, head, :] as a 1-D view (its base once
      // per item) and the token in 32 bits (a dK/dV kernel's step reads
      // these beside dK and dV: no 64-bit strides and bounds there).
      namespace arith = mlir::arith;
      auto [view, stride] = headRowsView(b, loc, tensor, batch, head, 1, 2);
      mlir::Type i32 = b.getI32Type();
      auto to32 = [&](Value v) { return arith::IndexCastUIOp::create(b, loc, i32, v).getResult(); };
      Value first = to32(cols.first), end = to32(cols.end);
      Value last = arith::SubIOp::create(b, loc, end, arith::ConstantIntOp::create(b, loc, 1, 32));
      for (int64_t n = 0; n < count / 8; ++n)
        for (int64_t j = 0; j < 2; ++j) {
          Value c = to32(mlir::arith::AddIOp::create(b, loc, colPair, index(b, loc, n * 8 + j)));
          Value pos = arith::AddIOp::create(b, loc, first, c);
          Value token = arith::MinUIOp::create(b, loc, pos, last);
          Value at = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                                arith::MulIOp::create(b, loc, token, stride));
          Value x = mlir::memref::LoadOp::create(b, loc, view, mlir::ValueRange{at});
          Value in = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, pos, end);
          out.push_back(arith::SelectOp::create(b, loc, in, x, zero));
        }
      return out;
    }
    for (int64_t n = 0; n < count / 8; ++n)
      for (int64_t j = 0; j < 2; ++j) {
        Value c = mlir::arith::AddIOp::create(b, loc, colPair, index(b, loc, n * 8 + j));
        Value x = mlir::memref::LoadOp::create(
            b, loc, tensor,
            mlir::ValueRange{batch, cols.head(b, loc, head, c), cols.clampedToken(b, loc, c)});
        out.push_back(mlir::arith::SelectOp::create(b, loc, cols.contains(b, loc, c), x, zero));
      }
    return out;
  }
  Value ownsRowStats(OpBuilder &b, Location loc) const override {
    Value quad = mlir::arith::RemUIOp::create(b, loc, laneId(b, loc), index(b, loc, 4));
    return mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::eq, quad,
                                       index(b, loc, 0));
  }

  /// Whether O may go out in 16-byte stores (the passes' `wide-stores`).
  bool wideStores = true;

  /// Groups of 4 n-tiles, 16-bit elements.
  bool hasRowRuns(int64_t fragments, mlir::Type elt) const override {
    return wideStores && fragments > 0 && fragments % 4 == 0 && elt.isIntOrFloat() &&
           elt.getIntOrFloatBitWidth() == 16;
  }
  /// A quad holds a row: lane u of it has columns 2u, 2u + 1 of each n-tile
  /// (one 32-bit word of two elements). Per 4 n-tiles the quad transposes
  /// its 4 x 4 words (lane t gets word u of n-tile t from lane u) in two
  /// butterfly steps, exchanging the words whose index differs from the
  /// lane in bit k with lane ^ 2^k: 4 shuffles, then lane t holds columns
  /// 8 (4 g + t) .. + 7 of its row in order.
  void rowRuns(OpBuilder &b, Location loc, mlir::ValueRange acc, unsigned slot, Value scale,
               mlir::Type elt, llvm::function_ref<void(Value, Value)> write) const override {
    namespace arith = mlir::arith;
    mlir::Type i32 = b.getI32Type();
    auto pairType = mlir::VectorType::get({2}, elt);
    auto wordType = mlir::VectorType::get({1}, i32);
    Value quadLane = arith::RemUIOp::create(b, loc, laneId(b, loc), index(b, loc, 4));
    Value lane32 = arith::IndexCastUIOp::create(b, loc, i32, quadLane);
    auto bitSet = [&](int64_t m) -> Value {
      Value bit = arith::AndIOp::create(b, loc, lane32, heed::gpu_tile::i32(b, loc, m));
      return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, bit,
                                   heed::gpu_tile::i32(b, loc, 0));
    };
    Value bits[] = {bitSet(1), bitSet(2)};
    for (size_t g = 0; g + 4 <= acc.size(); g += 4) {
      Value w[4];
      for (int64_t v = 0; v < 4; ++v) {
        Value halves[2];
        for (int64_t j = 0; j < 2; ++j) {
          Value x = mlir::vector::ExtractOp::create(b, loc, acc[g + v],
                                                    llvm::ArrayRef<int64_t>{slot, j});
          halves[j] = arith::TruncFOp::create(b, loc, elt,
                                              arith::MulFOp::create(b, loc, x, scale));
        }
        Value pair = mlir::vector::FromElementsOp::create(b, loc, pairType, halves);
        w[v] = mlir::vector::ExtractOp::create(
            b, loc, mlir::vector::BitCastOp::create(b, loc, wordType, pair),
            llvm::ArrayRef<int64_t>{0});
      }
      for (int64_t k = 0; k < 2; ++k) {
        int64_t m = int64_t(1) << k;
        for (int64_t a = 0; a < 4; ++a) {
          if (a & m)
            continue;
          // Bit k set: send w[a], receive into w[a]; clear: the same with w[a | m].
          Value send = arith::SelectOp::create(b, loc, bits[k], w[a], w[a | m]);
          Value recv = mlir::gpu::ShuffleOp::create(b, loc, send, heed::gpu_tile::i32(b, loc, m),
                                                    heed::gpu_tile::i32(b, loc, 32),
                                                    mlir::gpu::ShuffleMode::XOR)
                           .getShuffleResult();
          w[a | m] = arith::SelectOp::create(b, loc, bits[k], w[a | m], recv);
          w[a] = arith::SelectOp::create(b, loc, bits[k], recv, w[a]);
        }
      }
      Value words = mlir::vector::FromElementsOp::create(
          b, loc, mlir::VectorType::get({4}, i32), mlir::ValueRange(w));
      Value run = mlir::vector::BitCastOp::create(b, loc, mlir::VectorType::get({8}, elt), words);
      Value first = arith::MulIOp::create(
          b, loc, arith::AddIOp::create(b, loc, index(b, loc, int64_t(g)), quadLane),
          index(b, loc, 8));
      write(first, run);
    }
  }

protected:
  /// The A operand (register layout of mma m16n8k16 and of wgmma's k16) of
  /// P for keys [16 t, 16 t + 16), in shape.elt: the elements of S n-tiles
  /// 2 t and 2 t + 1 (elements() order) -- rows r and r + 8 of the first 8
  /// keys, then of the next 8. (P may come narrowed already: probIn.)
  llvm::SmallVector<Value> pOperand(OpBuilder &b, Location loc, llvm::ArrayRef<Value> p,
                                    int64_t t) const {
    llvm::SmallVector<Value> a;
    for (int64_t n : {2 * t, 2 * t + 1})
      for (int64_t e = 0; e < 4; ++e)
        a.push_back(probIn(b, loc, shape.elt, p[n * 4 + e]));
    return a;
  }
  static Value laneId(OpBuilder &b, Location loc) { return heed::gpu_tile::laneId(b, loc, 32); }
  /// The first block row of this thread's warp.
  static Value warpRow(OpBuilder &b, Location loc) {
    Value warp = mlir::arith::DivUIOp::create(b, loc, threadId(b, loc), index(b, loc, 32));
    return mlir::arith::MulIOp::create(b, loc, warp, index(b, loc, 16));
  }
  static mlir::VectorType cType(mlir::MLIRContext *ctx) {
    return mlir::VectorType::get({2, 2}, mlir::Float32Type::get(ctx));
  }
  static Value zeroC(OpBuilder &b, Location loc) {
    return mlir::arith::ConstantOp::create(
        b, loc, mlir::DenseElementsAttr::get(cType(b.getContext()), b.getF32FloatAttr(0)));
  }
};

} // namespace heed::gpu_tile

#endif
