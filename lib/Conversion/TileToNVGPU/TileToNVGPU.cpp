// --convert-attn-tile-to-nvgpu: the tile ops on NVIDIA tensor cores, the
// MatrixCoreTarget of mma.sync m16n8k16 (f16 or bf16 in, f32 accumulate).
// A block of 4 warps (by default) owns the query tile, 16 rows per warp.
// Q is staged through shared memory once and kept in registers as A
// fragments (ldmatrix); K/V tiles are copied by cp.async into slots of
// dynamic shared memory, rows padded by 8 elements (no bank conflicts on
// ldmatrix); S = Q K^T and O += P V run on mma.sync (V through
// ldmatrix.trans); P goes from the S accumulators straight into the A
// operand. Row statistics are shared by the 4 lanes of a quad (shuffles).
// f16 runs on nvgpu.mma.sync, bf16 on nvvm.mma.sync (nvgpu.mma.sync cannot
// type bf16 in LLVM 22).
//
// The m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16"):
// lane l holds rows l/4 and l/4 + 8 of its warp's 16, columns 2 (l%4) and
// 2 (l%4) + 1 of each 8-column n-tile.
#include "heed/Conversion/Passes.h"

#include "WarpFragments.h"
#include "../TileCommon/KeyRows.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace heed {
#define GEN_PASS_DEF_CONVERTATTNTILETONVGPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::gpu_tile;
using heed::attn::Layout;

namespace {

class NVGPUTarget : public WarpFragmentTarget {
public:
  static constexpr int64_t kPad = 8;
  using WarpFragmentTarget::WarpFragmentTarget;

  std::string unsupported() const override {
    Type elt = shape.elt;
    if (!elt.isF16() && !elt.isBF16())
      return "tensor cores take f16 or bf16";
    if (shape.headDim % 16 || shape.valueDim % 16 || shape.headDim > 256 || shape.valueDim > 256)
      return "tensor cores need head dims that are multiples of 16, at most 256";
    if (shape.keys % 16 || shape.rowsPerWave != 16 || shape.blockRows() % 16)
      return "tensor cores need key tiles of a multiple of 16 keys and 16 query rows per warp";
    return "";
  }

  /// A fragments of 16 head-dim columns.
  std::pair<VectorType, int64_t> operandFragment(MLIRContext *) const override {
    return {aType(), 16};
  }

  /// The slots of K and of V, each [rows][dim + 8] with slot s at rows
  /// [s keys, (s + 1) keys); Q is staged through the K buffer before the
  /// loop, so it has at least blockRows rows.
  int64_t bufferRows() const { return std::max(shape.stages * shape.keys, shape.blockRows()); }
  int64_t kBytes() const { return bufferRows() * (shape.headDim + kPad) * 2; }
  int64_t vBytes() const { return bufferRows() * (shape.valueDim + kPad) * 2; }
  int64_t dynamicSharedBytes() const override {
    int64_t resident = residentOperands() ? shape.blockRows() * (shape.headDim + shape.valueDim +
                                                                  2 * kPad) * 2
                                          : 0;
    return kBytes() + vBytes() + resident;
  }

  /// The backward's kernels above D = 64 keep their item's rows (Q and dO,
  /// or K and V) in shared memory, after the slots: in registers with the
  /// dK/dV (or dQ) accumulators they would spill.
  bool residentOperands() const override {
    return shape.backward && std::max(shape.headDim, shape.valueDim) > 64;
  }

  /// Q tile -> shared memory -> A fragments in registers (D / 16 of them).
  /// The backward loads two such tiles (Q and dO, or K and V: parts 0 and
  /// 1), each through (or, resident, into) the buffer of its part, after
  /// every warp is done with what the buffer held.
  SmallVector<Value> loadQ(OpBuilder &b, Location loc, Value q, Value batch, Value head,
                           const QueryRows &rows, Layout layout, int64_t cols,
                           int64_t part, Value) const override {
    bool part1 = part == 1;
    Value bufA = residentOperands() ? residentBuffer(b, loc, part1) : buffer(b, loc, part1);
    if (shape.backward)
      gpu::BarrierOp::create(b, loc);
    stageRows(b, loc, q, bufA, {}, layout, batch, head, rows, shape.blockRows(), cols,
              shape.threads());
    gpu::BarrierOp::create(b, loc);
    if (residentOperands())
      return {index(b, loc, part1 ? 1 : 0)};
    return operandFragments(b, loc, bufA, cols);
  }

  /// The warp's A fragment of rows [warpRow, warpRow + 16) of `bufA`,
  /// columns [16 kk, 16 kk + 16).
  Value operandFragment(OpBuilder &b, Location loc, Value bufA, int64_t kk) const {
    Value lane = laneId(b, loc);
    Value laneMod16 = arith::RemUIOp::create(b, loc, lane, index(b, loc, 16));
    Value laneDiv16 = arith::DivUIOp::create(b, loc, lane, index(b, loc, 16));
    Value r = arith::AddIOp::create(b, loc, warpRow(b, loc), laneMod16);
    Value c = arith::AddIOp::create(b, loc, index(b, loc, kk * 16),
                                    arith::MulIOp::create(b, loc, laneDiv16, index(b, loc, 8)));
    return nvgpu::LdMatrixOp::create(b, loc, aType(), bufA, ValueRange{r, c},
                                     /*transpose=*/false, /*numTiles=*/4);
  }
  /// All of them (D / 16).
  SmallVector<Value> operandFragments(OpBuilder &b, Location loc, Value bufA, int64_t cols) const {
    SmallVector<Value> frags;
    for (int64_t kk = 0; kk < cols / 16; ++kk)
      frags.push_back(operandFragment(b, loc, bufA, kk));
    return frags;
  }

  /// cp.async, 16 bytes per copy (zero-filled past the sequence).
  void copyKV(OpBuilder &b, Location loc, Value k, Value v, Value batch, Value head,
              const QueryRows &keys, Value stage, Layout layout, Value pages) const override {
    copyAsync(b, loc, k, buffer(b, loc, false), stage, batch, head, keys, shape.headDim, layout,
              pages);
    copyAsync(b, loc, v, buffer(b, loc, true), stage, batch, head, keys, shape.valueDim, layout,
              pages);
  }
  bool takesPatches() const override { return true; }
  /// cp.async.commit_group (the group may be empty).
  void commitKV(OpBuilder &b, Location loc) const override {
    nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, tokenType(b), ValueRange{});
  }
  /// cp.async.wait_group `pending`, then the block's barrier.
  void waitKV(OpBuilder &b, Location loc, int64_t pending) const override {
    NVVM::CpAsyncWaitGroupOp::create(b, loc, pending);
    gpu::BarrierOp::create(b, loc);
  }

  /// S = Q K^T: keys / 8 n-tiles of 8 keys, |q| k-steps of 16 columns.
  SmallVector<Value> scores(OpBuilder &b, Location loc, ValueRange qIn, Value stage,
                            int64_t part) const override {
    Value bufA = buffer(b, loc, part == 1);
    Value lane = laneId(b, loc);
    Value laneMod8 = arith::RemUIOp::create(b, loc, lane, index(b, loc, 8));
    Value half = arith::RemUIOp::create(b, loc, arith::DivUIOp::create(b, loc, lane, index(b, loc, 8)),
                                        index(b, loc, 2));
    auto kFragment = [&](int64_t n, int64_t kk) {
      Value r = arith::AddIOp::create(b, loc, index(b, loc, n * 8), laneMod8);
      Value col = arith::AddIOp::create(b, loc, index(b, loc, kk * 16),
                                        arith::MulIOp::create(b, loc, half, index(b, loc, 8)));
      return nvgpu::LdMatrixOp::create(b, loc, bType(), bufA,
                                       ValueRange{stageRow(b, loc, stage, r), col},
                                       /*transpose=*/false, /*numTiles=*/2);
    };
    // Resident rows: each A fragment read (ldmatrix) where it is used, so
    // that D / 16 of them are not live across the loop (nor here).
    bool resident = residentOperands();
    bool part1 = resident && getConstantIntValue(qIn[0]).value_or(0) == 1;
    Value bufQ = resident ? residentBuffer(b, loc, part1) : Value();
    int64_t steps = resident ? (part1 ? shape.valueDim : shape.headDim) / 16 : int64_t(qIn.size());
    SmallVector<Value> acc;
    for (int64_t n = 0; n < shape.keys / 8; ++n) {
      Value c = zeroC(b, loc);
      for (int64_t kk = 0; kk < steps; ++kk)
        c = mma(b, loc, resident ? operandFragment(b, loc, bufQ, kk) : qIn[kk], kFragment(n, kk),
                c);
      acc.push_back(c);
    }
    return acc;
  }

  /// O += P V, k = 16 keys per mma: P's A fragment for keys [16 t, 16 t +
  /// 16) is the S accumulators of n-tiles 2 t and 2 t + 1, converted.
  void accumulatePV(OpBuilder &b, Location loc, ArrayRef<Value> p, Value stage, int64_t part,
                    MutableArrayRef<Value> o) const override {
    Value bufV = buffer(b, loc, part == 1);
    Value laneMod16 = arith::RemUIOp::create(b, loc, laneId(b, loc), index(b, loc, 16));
    for (int64_t t16 = 0; t16 < shape.keys / 16; ++t16) {
      Value aFrag = vector::FromElementsOp::create(b, loc, aType(), pOperand(b, loc, p, t16));
      for (int64_t d = 0; d < int64_t(o.size()); ++d) {
        Value r = arith::AddIOp::create(b, loc, index(b, loc, t16 * 16), laneMod16);
        Value vFrag = nvgpu::LdMatrixOp::create(b, loc, bType(), bufV,
                                                ValueRange{stageRow(b, loc, stage, r), index(b, loc, d * 8)},
                                                /*transpose=*/true, /*numTiles=*/2);
        o[d] = mma(b, loc, aFrag, vFrag, o[d]);
      }
    }
  }
private:
  /// The K (Q) or V buffer in dynamic shared memory.
  Value buffer(OpBuilder &b, Location loc, bool value) const {
    auto space = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
    auto bytes = MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), MemRefLayoutAttrInterface{},
                                 space);
    Value shared = gpu::DynamicSharedMemoryOp::create(b, loc, bytes);
    int64_t width = value ? shape.valueDim : shape.headDim;
    auto type = MemRefType::get({bufferRows(), width + kPad}, shape.elt,
                                MemRefLayoutAttrInterface{}, space);
    return memref::ViewOp::create(b, loc, type, shared, index(b, loc, value ? kBytes() : 0),
                                  ValueRange{});
  }
  /// A resident buffer of the item's rows (part 0: D wide, 1: Dv wide),
  /// after the K/V slots.
  Value residentBuffer(OpBuilder &b, Location loc, bool part1) const {
    auto space = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
    auto bytes = MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), MemRefLayoutAttrInterface{},
                                 space);
    Value shared = gpu::DynamicSharedMemoryOp::create(b, loc, bytes);
    int64_t width = part1 ? shape.valueDim : shape.headDim;
    int64_t offset = kBytes() + vBytes() +
                     (part1 ? shape.blockRows() * (shape.headDim + kPad) * 2 : 0);
    auto type = MemRefType::get({shape.blockRows(), width + kPad}, shape.elt,
                                MemRefLayoutAttrInterface{}, space);
    return memref::ViewOp::create(b, loc, type, shared, index(b, loc, offset), ValueRange{});
  }
  /// Row `r` of slot `stage` in a K/V buffer.
  Value stageRow(OpBuilder &b, Location loc, Value stage, Value r) const {
    return arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, stage, index(b, loc, shape.keys)),
                                 r);
  }
  static Type tokenType(OpBuilder &b) { return nvgpu::DeviceAsyncTokenType::get(b.getContext()); }
  /// The rows of key tile `keys` of a K or V tensor into smem[stage]: each
  /// thread copies 8 elements per step (a loop: unrolled, the loop-invariant
  /// addresses of every copy would stay live in registers); rows that are
  /// not real (past the sequence, a patch's holes) read nothing (src-size
  /// 0) and are zero-filled. With `pages` (a paged cache) each row's page
  /// comes from the table.
  void copyAsync(OpBuilder &b, Location loc, Value global, Value smem, Value stage, Value batch,
                 Value head, const QueryRows &keys, int64_t width, Layout layout,
                 Value pages) const {
    Value row0 = keys.first, seq = keys.end;
    int64_t perRow = width / 8, chunks = shape.keys * perRow;
    int64_t pageSize = pages ? heed::pageSizeOf(global, layout) : 0;
    // Pages holding whole tiles: the tile's page read once, not per copy
    // (a patch's rows are not one run of tokens: per row).
    Value page = keys.patched() ? Value()
                                : heed::tilePage(b, loc, pages, pageSize, shape.keys, batch, row0);
    auto loop = scf::ForOp::create(b, loc, threadId(b, loc), index(b, loc, chunks),
                                   index(b, loc, shape.threads()));
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    Value r = arith::DivUIOp::create(b, loc, i, index(b, loc, perRow));
    Value c = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, i, index(b, loc, perRow)),
                                    index(b, loc, 8));
    Value in = keys.contains(b, loc, r);
    Value src = keys.clampedToken(b, loc, r);
    Value count = arith::SelectOp::create(b, loc, in, index(b, loc, 8), index(b, loc, 0));
    Value dst[] = {stageRow(b, loc, stage, r), c};
    if (!pages && shape.backward && !keys.patched()) {
      // The (batch, head) rows as a flat view (its base once per item) and
      // the row's offset in 32 bits: a row's stride (D or H D elements) and
      // the sequence fit, so the copies keep one 64-bit base beside the
      // dK and dV accumulators, not 64-bit strides and bounds
      // (docs/backward.md; the forward's kernels took more registers so).
      bool bshd = layout == Layout::BSHD;
      auto [view, rowStride] =
          headRowsView(b, loc, global, batch, head, bshd ? 2 : 1, bshd ? 1 : 2);
      Type i32 = b.getI32Type();
      auto to32 = [&](Value v) { return arith::IndexCastUIOp::create(b, loc, i32, v).getResult(); };
      Value pos32 = arith::AddIOp::create(b, loc, to32(row0), to32(r));
      Value seq32 = to32(seq);
      Value in32 = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, pos32, seq32);
      Value src32 = arith::SelectOp::create(
          b, loc, in32, pos32, arith::SubIOp::create(b, loc, seq32, arith::ConstantIntOp::create(b, loc, 1, 32)));
      count = arith::SelectOp::create(b, loc, in32, index(b, loc, 8), index(b, loc, 0));
      Value off = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, src32, rowStride),
                                        to32(c));
      // (Signed: a view may step backwards through its rows.)
      nvgpu::DeviceAsyncCopyOp::create(
          b, loc, tokenType(b), smem, dst, view,
          ValueRange{arith::IndexCastOp::create(b, loc, b.getIndexType(), off)},
          b.getIndexAttr(8), count, b.getUnitAttr());
      return;
    }
    auto [outer, at0] = heed::keyRow(b, loc, pages, pageSize, batch, src, page);
    nvgpu::DeviceAsyncCopyOp::create(b, loc, tokenType(b), smem, dst, global,
                                     at(layout, outer, head, at0, c), b.getIndexAttr(8), count,
                                     b.getUnitAttr());
  }
  VectorType aType() const { return VectorType::get({4, 2}, shape.elt); }
  VectorType bType() const { return VectorType::get({2, 2}, shape.elt); }
  /// C += A B on one m16n8k16 tensor-core op.
  Value mma(OpBuilder &b, Location loc, Value a, Value bFrag, Value c) const;
};

Value NVGPUTarget::mma(OpBuilder &b, Location loc, Value a, Value bFrag, Value c) const {
  if (shape.elt.isF16())
    return nvgpu::MmaSyncOp::create(b, loc, a, bFrag, c, ArrayRef<int64_t>{16, 8, 16});
  // bf16: nvvm.mma.sync on the registers (pairs of bf16 as i32).
  auto registers = [&](Value frag, int64_t n) {
    SmallVector<Value> regs;
    VectorType i32x1 = VectorType::get({1}, b.getI32Type());
    for (int64_t r = 0; r < n; ++r) {
      Value pair = vector::ExtractOp::create(b, loc, frag, ArrayRef<int64_t>{r});
      regs.push_back(vector::ExtractOp::create(
          b, loc, vector::BitCastOp::create(b, loc, i32x1, pair), ArrayRef<int64_t>{0}));
    }
    return regs;
  };
  SmallVector<Value> cRegs;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 2; ++j)
      cRegs.push_back(vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i, j}));
  Type f32t = b.getF32Type();
  auto result = LLVM::LLVMStructType::getLiteral(b.getContext(), {f32t, f32t, f32t, f32t});
  Value d = NVVM::MmaOp::create(
      b, loc, result, registers(a, 4), registers(bFrag, 2), cRegs, ArrayRef<int64_t>{16, 8, 16},
      std::nullopt, std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16, NVVM::MMATypes::bf16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row, NVVM::MMALayout::col});
  SmallVector<Value> parts;
  for (int64_t e = 0; e < 4; ++e)
    parts.push_back(LLVM::ExtractValueOp::create(b, loc, d, ArrayRef<int64_t>{e}));
  return vector::FromElementsOp::create(b, loc, cType(b.getContext()), parts);
}

struct ConvertAttnTileToNVGPUPass
    : heed::impl::ConvertAttnTileToNVGPUBase<ConvertAttnTileToNVGPUPass> {
  using ConvertAttnTileToNVGPUBase::ConvertAttnTileToNVGPUBase;
  void runOnOperation() override {
    auto make = [&](const KernelShape &shape) {
      auto target = std::make_unique<NVGPUTarget>(shape);
      target->wideStores = wideStores;
      return std::unique_ptr<MatrixCoreTarget>(std::move(target));
    };
    if (failed(lowerMatrixCoreKernels(getOperation(), "--convert-attn-tile-to-nvgpu", make,
                                      WarpFragmentTarget::completeShape)))
      signalPassFailure();
  }
};

} // namespace
