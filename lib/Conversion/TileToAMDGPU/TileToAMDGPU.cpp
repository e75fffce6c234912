// --convert-attn-tile-to-amdgpu: the tile ops on AMD matrix cores, the
// MatrixCoreTarget of MFMA (wave64, f16 or bf16 in, f32 accumulate),
// shapes 32x32x8 (default) or 16x16x16, for gfx90a (MI200), gfx942 (MI300)
// and gfx950.
//
// The kernel computes S^T = K Q^T rather than S = Q K^T: in an MFMA
// accumulator a lane holds one column and M*M/64 rows, so with queries as
// columns each lane owns one query row (one row slot) and its keys, the
// row statistics are mostly in-lane (one or two shuffles finish them), and
// the S^T accumulators are, element for element, the B operand of
// O^T += V^T P^T (no data movement between the two products). A block of
// waves owns M query rows each; K tiles are staged in LDS row by row and V
// tiles transposed (workgroup attributions, rows padded by 4 elements), by
// synchronous copies; Q's B operands are loaded from global memory once.
//
// MFMA MxMxK operand layouts (AMD's matrix instruction calculator), G =
// 64 / M lane groups, K = 4 G, lane l: A[row l%M][k 4 (l/M) .. +4],
// B[k 4 (l/M) .. +4][col l%M], accumulator element i at row (i/4) 4G +
// 4 (l/M) + i%4, col l%M.
#include "heed/Conversion/Passes.h"

#include "../TileToGPU/MatrixCore.h"

#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/LLVMIR/ROCDLDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace heed {
#define GEN_PASS_DEF_CONVERTATTNTILETOAMDGPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::gpu_tile;
using heed::attn::Layout;

namespace {

/// Moves the arithmetic of each branch of the schedule that reads nothing
/// the branch defines before the branch (e.g. the FULL test of a tile, in
/// the branch of the tiles that are not EMPTY). LLVM's AMDGPU backend
/// structurizes even uniform branches, so what the second branch needs is
/// live through the first: computed inside, the FULL test cost up to 40
/// VGPRs (causal, bf16, D = 128: 264, so one wave per SIMD, against 226).
void hoistBranchInvariants(gpu::GPUFuncOp kernel) {
  kernel.walk([](scf::IfOp ifOp) {
    for (Region &region : ifOp->getRegions())
      for (Operation &op : llvm::make_early_inc_range(region.getOps())) {
        bool invariant = llvm::all_of(op.getOperands(), [&](Value v) {
          return !ifOp->isAncestor(v.getParentRegion()->getParentOp());
        });
        if (invariant && isa<arith::ArithDialect>(op.getDialect()) && isPure(&op))
          op.moveBefore(ifOp);
      }
  });
}

class AMDGPUTarget : public MatrixCoreTarget {
public:
  static constexpr int64_t kPad = 4;
  /// `m`: the MFMA shape (M = N); `ldsBytes`: the LDS a workgroup may take.
  AMDGPUTarget(const KernelShape &shape, int64_t m, int64_t ldsBytes)
      : MatrixCoreTarget(shape), M(m), K(4 * (64 / m)), E(m * m / 64), ldsBytes(ldsBytes) {}

  /// 64-bit integer code (MatrixCoreTarget::narrowIntegers): narrowed,
  /// gfx942's causal kernel at D = 256 spilled a VGPR (439 VGPRs where it
  /// had 420), though documents and relative bias took fewer; not yet
  /// weighed on an AMD GPU.
  bool narrowIntegers(bool) const override { return false; }

  std::string unsupported() const override {
    Type elt = shape.elt;
    if (!elt.isF16() && !elt.isBF16())
      return "MFMA takes f16 or bf16";
    if (shape.headDim % 16 || shape.valueDim % M || shape.headDim > 256 || shape.valueDim > 256)
      return "MFMA needs head dims that are multiples of 16 (and of the MFMA size for v), at "
             "most 256";
    if (shape.waves < 1 || shape.keys % M)
      return "MFMA " + std::to_string(M) + " needs query and key tiles of a multiple of " +
             std::to_string(M) + " rows";
    // The backward's dQ and dK are accumulators, D wide: M x M fragments.
    if (shape.backward && shape.headDim % M)
      return "the MFMA " + std::to_string(M) + " backward needs q/k head dims that are "
             "multiples of " + std::to_string(M) + " (dQ and dK are accumulators)";
    return "";
  }

  /// B operands of K head-dim columns (4 per lane); M x M accumulators.
  std::pair<VectorType, int64_t> operandFragment(MLIRContext *) const override {
    return {operandType(), K};
  }
  std::pair<VectorType, int64_t> accumulatorFragment(MLIRContext *ctx) const override {
    return {accType(ctx), M};
  }

  /// The LDS slots, one per staging slot the kernel's copies use, rows
  /// padded by 4: a slot part read by attn.tile.qk (the A operand of S^T =
  /// K Q^T) row-major as [stages][keys][width + 4], one read by attn.tile.pv
  /// (the A operand of O^T += V^T P^T) transposed as [stages][width][keys +
  /// 4] (V^T rows are contiguous). The forward stages K row-major and V
  /// transposed; the backward's kernels read a part both ways (the dQ
  /// kernel K, the dK/dV kernel Q and dO) and get both.
  LogicalResult prepareKernel(gpu::GPUFuncOp kernel) override {
    hoistBranchInvariants(kernel);
    int64_t stages = 1;
    kernel.walk([&](heed::attn::TileCopyKVOp copy) {
      stages = std::max<int64_t>(stages, copy.getStages());
    });
    // Which parts each product reads (a tile not traced to its load: both).
    bool rowMajor[2] = {false, false}, transposed[2] = {false, false};
    auto mark = [](Value tile, bool (&used)[2]) {
      auto load = tile.getDefiningOp<heed::attn::TileLoadOp>();
      if (load && load.getStage() && load.getPart() < 2)
        used[load.getPart()] = true;
      else
        used[0] = used[1] = true;
    };
    kernel.walk([&](heed::attn::TileQKOp op) { mark(op.getK(), rowMajor); });
    kernel.walk([&](heed::attn::TilePVOp op) { mark(op.getV(), transposed); });
    auto space = gpu::AddressSpaceAttr::get(kernel.getContext(), gpu::AddressSpace::Workgroup);
    int64_t bytes = 0; // what the attributions take (2-byte elements)
    auto lds = [&](int64_t rows, int64_t cols) {
      auto type = MemRefType::get({stages, rows, cols + kPad}, shape.elt,
                                  MemRefLayoutAttrInterface{}, space);
      bytes += type.getNumElements() * 2;
      return kernel.addWorkgroupAttribution(type, kernel.getLoc());
    };
    int64_t width[2] = {shape.headDim, shape.valueDim};
    // (In this order: the forward's K, then V^T.)
    if (rowMajor[0])
      bufRows[0] = lds(shape.keys, width[0]);
    if (transposed[1])
      bufCols[1] = lds(width[1], shape.keys);
    if (transposed[0])
      bufCols[0] = lds(width[0], shape.keys);
    if (rowMajor[1])
      bufRows[1] = lds(shape.keys, width[1]);
    if (bytes > ldsBytes)
      return kernel.emitOpError()
             << "--convert-attn-tile-to-amdgpu: the staging slots take " << bytes
             << " bytes of LDS, over the " << ldsBytes
             << " of a workgroup: head dims too large for this kernel's tiles";
    return success();
  }

  Value slotRow(OpBuilder &b, Location loc, unsigned) const override {
    Value wave = arith::DivUIOp::create(b, loc, threadId(b, loc), index(b, loc, 64));
    return arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, wave, index(b, loc, M)),
                                 col(b, loc));
  }

  /// The lane's query row as cols / K B operands of 4 elements (zeros for
  /// a row that is not real): Q in the forward; Q and dO, or K and V, in
  /// the backward.
  SmallVector<Value> loadQ(OpBuilder &b, Location loc, Value q, Value batch, Value head,
                           const QueryRows &rows, Layout layout,
                           int64_t cols, int64_t, Value) const override {
    Value in = rows.contains(b, loc, slotRow(b, loc, 0));
    Value row = rows.token(b, loc, slotRow(b, loc, 0), in);
    SmallVector<Value> frags;
    for (int64_t kk = 0; kk < cols / K; ++kk) {
      Value d = arith::AddIOp::create(b, loc, index(b, loc, kk * K), group4(b, loc));
      frags.push_back(loadOrZero(b, loc, operandType(), q,
                                 at(layout, batch, rows.head(b, loc, head, slotRow(b, loc, 0)),
                                    row, d),
                                 in));
    }
    return frags;
  }

  /// Synchronous copies of each part into its buffers: row by row, or
  /// transposed.
  void copyKV(OpBuilder &b, Location loc, Value k, Value v, Value batch, Value head,
              const QueryRows &keys, Value stage, Layout layout, Value pages) const override {
    Value kv0 = keys.first, seq = keys.end;
    Value tensors[2] = {k, v};
    int64_t width[2] = {shape.headDim, shape.valueDim};
    for (int p = 0; p < 2; ++p)
      for (bool transposed : {false, true})
        if (Value buf = transposed ? bufCols[p] : bufRows[p])
          stageRows(b, loc, tensors[p], buf, stage, layout, batch, head, kv0, seq, shape.keys,
                    width[p], shape.threads(), transposed, /*rowList=*/{}, pages);
  }
  /// The copies are synchronous (nothing stays pending): the block's barrier
  /// is the wait.
  void waitKV(OpBuilder &b, Location loc, int64_t pending) const override {
    gpu::BarrierOp::create(b, loc);
  }

  /// S^T = K Q^T: one MxM accumulator per M keys of the tile (the slot's
  /// part `part`, row-major; q.size() K columns wide).
  SmallVector<Value> scores(OpBuilder &b, Location loc, ValueRange q, Value stage,
                            int64_t part) const override {
    Value buf = bufRows[part];
    SmallVector<Value> acc;
    for (int64_t t = 0; t < shape.keys / M; ++t) {
      Value c = zeroAcc(b, loc);
      Value r = arith::AddIOp::create(b, loc, index(b, loc, t * M), col(b, loc));
      for (auto [kk, qk] : llvm::enumerate(q)) {
        Value d = arith::AddIOp::create(b, loc, index(b, loc, int64_t(kk) * K), group4(b, loc));
        Value a = vector::LoadOp::create(b, loc, operandType(), buf, ValueRange{stage, r, d});
        c = mfma(b, loc, a, qk, c);
      }
      acc.push_back(c);
    }
    return acc;
  }

  /// Accumulator t's element i is at row t M + (i/4) K + 4 (l/M) + i%4 (a
  /// key, or a value dim) of the lane's query column.
  SmallVector<Element> elements(OpBuilder &b, Location loc, ValueRange acc) const override {
    SmallVector<Element> out;
    for (auto [t, c] : llvm::enumerate(acc))
      for (int64_t i = 0; i < E; ++i) {
        int64_t fixed = int64_t(t) * M + (i / 4) * K + i % 4;
        out.push_back({vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i}), 0,
                       arith::AddIOp::create(b, loc, index(b, loc, fixed), group4(b, loc))});
      }
    return out;
  }

  /// The lanes holding a query row: l, l + M, ... (a column of the tile).
  Value rowReduce(OpBuilder &b, Location loc, Value x, bool max) const override {
    return xorReduce(b, loc, x, M, 64, 64, max);
  }
  /// A row's lanes l % M + M g, g < 64 / M: this lane is its g-th.
  int64_t rowLanes() const override { return 64 / M; }
  Value rowLane(OpBuilder &b, Location loc) const override {
    return arith::DivUIOp::create(b, loc, laneId(b, loc), index(b, loc, M));
  }
  Value scaleRows(OpBuilder &b, Location loc, Value acc, ArrayRef<Value> perSlot) const override {
    return arith::MulFOp::create(
        b, loc, acc, vector::BroadcastOp::create(b, loc, accType(b.getContext()), perSlot[0]));
  }

  /// O^T += V^T P^T, K keys per MFMA: the B operand for keys [K j, K j + K)
  /// of key tile t is elements 4 j .. 4 j + 3 of S^T accumulator t; V^T
  /// is the slot's part `part`, transposed (the backward: dQ^T += K^T dS^T,
  /// dV^T += dO^T P, dK^T += Q^T dS).
  void accumulatePV(OpBuilder &b, Location loc, ArrayRef<Value> p, Value stage, int64_t part,
                    MutableArrayRef<Value> o) const override {
    Value buf = bufCols[part];
    for (int64_t step = 0; step < shape.keys / K; ++step) {
      int64_t t = step / (M / K), j = step % (M / K);
      SmallVector<Value> parts;
      for (int64_t e = 0; e < 4; ++e)
        parts.push_back(probIn(b, loc, shape.elt, p[t * E + 4 * j + e]));
      Value bOp = vector::FromElementsOp::create(b, loc, operandType(), parts);
      Value key = arith::AddIOp::create(b, loc, index(b, loc, step * K), group4(b, loc));
      for (int64_t dt = 0; dt < int64_t(o.size()); ++dt) {
        Value dv = arith::AddIOp::create(b, loc, index(b, loc, dt * M), col(b, loc));
        Value a = vector::LoadOp::create(b, loc, operandType(), buf, ValueRange{stage, dv, key});
        o[dt] = mfma(b, loc, a, bOp, o[dt]);
      }
    }
  }
  /// A col tile (the dK/dV kernel's lse and delta per query): the lane's
  /// elements are E distinct rows of each M x M accumulator, so one value
  /// per element, in elements() order.
  int64_t columnsPerLane(int64_t count) const override { return count / M * E; }
  unsigned columnOf(unsigned e) const override { return e; }
  SmallVector<Value> loadColumns(OpBuilder &b, Location loc, Value tensor, Value batch, Value head,
                                 const QueryRows &cols, int64_t count) const override {
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
    SmallVector<Value> out;
    for (int64_t t = 0; t < count / M; ++t)
      for (int64_t i = 0; i < E; ++i) {
        Value c = arith::AddIOp::create(b, loc, group4(b, loc),
                                        index(b, loc, t * M + (i / 4) * K + i % 4));
        Value x = memref::LoadOp::create(
            b, loc, tensor,
            ValueRange{batch, cols.head(b, loc, head, c), cols.clampedToken(b, loc, c)});
        out.push_back(arith::SelectOp::create(b, loc, cols.contains(b, loc, c), x, zero));
      }
    return out;
  }

  /// 2^x as v_exp_f32 (rocdl.exp2): math.exp2 and llvm.exp2 would become
  /// the device library's __ocml_exp2_f32, bitcode heed does not link.
  Value exp2(OpBuilder &b, Location loc, Value x) const override {
    return ROCDL::ROCDLExp2::create(b, loc, x.getType(), x);
  }

  /// Lanes l < M: the first lane of each query column.
  Value ownsRowStats(OpBuilder &b, Location loc) const override {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, laneId(b, loc), index(b, loc, M));
  }

private:
  static Value laneId(OpBuilder &b, Location loc) { return heed::gpu_tile::laneId(b, loc, 64); }
  /// l % M: the lane's column of an accumulator (its query row).
  Value col(OpBuilder &b, Location loc) const {
    return arith::RemUIOp::create(b, loc, laneId(b, loc), index(b, loc, M));
  }
  /// 4 (l / M): the lane's first row (k) within a group of K.
  Value group4(OpBuilder &b, Location loc) const {
    return arith::MulIOp::create(
        b, loc, arith::DivUIOp::create(b, loc, laneId(b, loc), index(b, loc, M)), index(b, loc, 4));
  }
  VectorType operandType() const { return VectorType::get({4}, shape.elt); }
  VectorType accType(MLIRContext *ctx) const {
    return VectorType::get({E}, Float32Type::get(ctx));
  }
  Value zeroAcc(OpBuilder &b, Location loc) const {
    return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(accType(b.getContext()),
                                                                    b.getF32FloatAttr(0)));
  }
  Value mfma(OpBuilder &b, Location loc, Value a, Value bOp, Value c) const {
    return amdgpu::MFMAOp::create(b, loc, accType(b.getContext()), M, M, K, /*blocks=*/1, a, bOp, c);
  }

  const int64_t M, K, E; ///< MFMA M = N, K; accumulator elements per lane
  const int64_t ldsBytes;
  /// The LDS slots of each part (workgroup attributions; null: not read so).
  Value bufRows[2], bufCols[2];
};

struct ConvertAttnTileToAMDGPUPass
    : heed::impl::ConvertAttnTileToAMDGPUBase<ConvertAttnTileToAMDGPUPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    int64_t m = mfma;
    if (m != 32 && m != 16) {
      module.emitError() << "--convert-attn-tile-to-amdgpu: mfma must be 32 (32x32x8) or 16 "
                            "(16x16x16), not "
                         << m;
      return signalPassFailure();
    }
    // A wave of 64 lanes per M query rows, one row slot per lane; a query
    // tile that is not a multiple of M rows gets no waves (unsupported).
    auto complete = [m](KernelShape &shape) {
      int64_t rows = shape.waves; // the query tile's rows
      shape.waveSize = 64;
      shape.rowsPerWave = m;
      shape.waves = rows % m ? 0 : rows / m;
      shape.rowSlots = 1;
    };
    if (failed(lowerMatrixCoreKernels(
            module, "--convert-attn-tile-to-amdgpu",
            [m, lds = int64_t(ldsBytes)](const KernelShape &shape) {
              return std::unique_ptr<MatrixCoreTarget>(
                  std::make_unique<AMDGPUTarget>(shape, m, lds));
            },
            complete)))
      signalPassFailure();
  }
};

} // namespace
