// --attn-lower-to-nvgpu: the FlashAttention-2 tile loop (TiledKernel.cpp)
// on NVIDIA tensor cores, mma.sync m16n8k16 with f16 or bf16 in and f32
// accumulate. A block of 4 warps owns 64 query rows (16 per warp); K/V
// tiles of 64 keys are staged in shared memory in two stages by cp.async
// (tile t + 1 is copied while tile t is computed; rows padded by 8
// elements: no bank conflicts on ldmatrix); the buffers live in dynamic
// shared memory (`shared_bytes` of the kernel's attn.launch: 67584 bytes at head dim
// 256, past the 48 KB static limit). Q, K and V fragments come from
// ldmatrix (V transposed); P goes from the S accumulators straight into
// the A operand of the PV product. Row statistics are shared by the 4
// lanes of a quad (shuffles). f16 runs on nvgpu.mma.sync; bf16 on
// nvvm.mma.sync, since nvgpu.mma.sync cannot type bf16 in LLVM 22.
//
// The m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16"):
// lane l holds rows l/4 and l/4 + 8 of its warp's 16, columns 2 (l%4) and
// 2 (l%4) + 1 of each 8-column n-tile.
#include "heed/Conversion/Passes.h"

#include "GPUKernel.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace heed {
#define GEN_PASS_DEF_ATTNLOWERTONVGPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::AttentionOp;
using heed::attn::VariantOp;

namespace {

using namespace heed::gpu_kernel;

class NVGPUKernelLowering : public TiledKernelLowering {
public:
  static constexpr int64_t kPad = 8;
  /// Keys per tile: `keys`, or by head dim (0): 64 up to D = 64, 32 above,
  /// where the S fragments of 64 keys leave too few registers for the
  /// variant's code.
  /// `warps` warps of 16 query rows each per block.
  static Shape kernelShape(int64_t headDim = 64, int64_t keys = 0, int64_t warps = 4) {
    Shape s;
    s.waveSize = 32;
    s.waves = warps;
    s.rowsPerWave = 16;
    s.keysPerTile = keys ? keys : headDim <= 64 ? 64 : 32;
    s.rowSlots = 2;
    s.stages = 2;
    return s;
  }
  NVGPUKernelLowering(OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel,
                      int64_t keys, int64_t warps)
      : TiledKernelLowering(
            b, op, variant, kernel,
            kernelShape(cast<MemRefType>(op.getQuery().getType()).getDimSize(3), keys, warps)) {}

protected:
  std::string unsupported() override {
    if (!elt.isF16() && !elt.isBF16())
      return "--attn-lower-to-nvgpu takes f16 or bf16";
    if (D % 16 || Dv % 16 || D > 256 || Dv > 256)
      return "--attn-lower-to-nvgpu needs head dims that are multiples of 16, at most 256";
    return "";
  }
  void begin() override {
    // Two stages of K and of V in dynamic shared memory, each [rows][dim + 8]
    // with stage s at rows [s keys, (s + 1) keys); Q is staged through the K
    // buffer before the loop, so it has at least blockRows rows.
    auto space = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
    auto bytes = MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                                 MemRefLayoutAttrInterface{}, space);
    Value shared = gpu::DynamicSharedMemoryOp::create(b, loc, bytes);
    int64_t rows = std::max(shape.stages * shape.keysPerTile, shape.blockRows());
    auto tiles = [&](int64_t width) {
      return MemRefType::get({rows, width + kPad}, elt, MemRefLayoutAttrInterface{}, space);
    };
    int64_t kBytes = rows * (D + kPad) * 2;
    int64_t vBytes = rows * (Dv + kPad) * 2;
    bufA = memref::ViewOp::create(b, loc, tiles(D), shared, idx(0), ValueRange{});
    bufV = memref::ViewOp::create(b, loc, tiles(Dv), shared, idx(kBytes), ValueRange{});
    auto launch = kernel->getAttrOfType<heed::attn::LaunchAttr>(heed::attn::kLaunchAttrName);
    kernel->setAttr(heed::attn::kLaunchAttrName,
                    heed::attn::LaunchAttr::get(b.getContext(), launch.getBlockRows(),
                                                launch.getThreads(), kBytes + vBytes));
    laneMod8 = arith::RemUIOp::create(b, loc, lane, idx(8));
    laneMod16 = arith::RemUIOp::create(b, loc, lane, idx(16));
    laneDiv16 = arith::DivUIOp::create(b, loc, lane, idx(16));
    half = arith::RemUIOp::create(b, loc, arith::DivUIOp::create(b, loc, lane, idx(8)), idx(2));
    warpRow = arith::MulIOp::create(b, loc, wave, idx(16));
    rowInWarp = arith::DivUIOp::create(b, loc, lane, idx(4));
    colPair = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, lane, idx(4)), idx(2));
  }
  Value slotRow(unsigned slot) override {
    return arith::AddIOp::create(b, loc, warpRow,
                                 arith::AddIOp::create(b, loc, rowInWarp, idx(8 * slot)));
  }
  /// Q tile -> shared memory -> A fragments in registers (D / 16 of them).
  void loadQ(Value q0) override {
    stageTile(op.getQuery(), bufA, {}, head, q0, seqQ, shape.blockRows(), D);
    gpu::BarrierOp::create(b, loc);
    for (int64_t kk = 0; kk < D / 16; ++kk) {
      Value r = arith::AddIOp::create(b, loc, warpRow, laneMod16);
      Value c = arith::AddIOp::create(b, loc, idx(kk * 16),
                                      arith::MulIOp::create(b, loc, laneDiv16, idx(8)));
      qFrag.push_back(nvgpu::LdMatrixOp::create(b, loc, aType(), bufA, ValueRange{r, c},
                                                /*transpose=*/false, /*numTiles=*/4));
    }
  }
  /// cp.async, 16 bytes per copy (zero-filled past Skv), one group per tile.
  void stageKV(Value kv0, Value stage) override {
    copyAsync(op.getKey(), bufA, stage, kv0, D);
    copyAsync(op.getValue(), bufV, stage, kv0, Dv);
    // cp.async.commit_group (the tokens of the copies are not needed: the
    // wait waits for every group).
    nvgpu::DeviceAsyncCreateGroupOp::create(b, loc, tokenType(), ValueRange{});
  }
  /// cp.async.wait_group 0: this lane's copies of the tile are done.
  void waitKV() override {
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);
  }
  /// S = Q K^T: 8 n-tiles of 8 keys.
  SmallVector<Value> scores() override {
    SmallVector<Value> acc;
    for (int64_t n = 0; n < shape.keysPerTile / 8; ++n) {
      Value c = zeroC();
      for (int64_t kk = 0; kk < D / 16; ++kk) {
        Value r = arith::AddIOp::create(b, loc, idx(n * 8), laneMod8);
        Value col = arith::AddIOp::create(b, loc, idx(kk * 16),
                                          arith::MulIOp::create(b, loc, half, idx(8)));
        Value kFrag = nvgpu::LdMatrixOp::create(b, loc, bType(), bufA,
                                                ValueRange{stageRow(computeStage, r), col},
                                                /*transpose=*/false, /*numTiles=*/2);
        c = mma(qFrag[kk], kFrag, c);
      }
      acc.push_back(c);
    }
    return acc;
  }
  SmallVector<Element> scoreElements(ArrayRef<Value> acc) override { return fragments(acc); }
  Value rowReduce(Value x, bool max) override {
    for (int64_t offset : {1, 2}) {
      Value other = gpu::ShuffleOp::create(b, loc, x, i32(offset), i32(32), gpu::ShuffleMode::XOR)
                        .getShuffleResult();
      x = max ? Value(arith::MaximumFOp::create(b, loc, x, other))
              : Value(arith::AddFOp::create(b, loc, x, other));
    }
    return x;
  }
  SmallVector<Value> zeroOutput() override { return SmallVector<Value>(Dv / 8, zeroC()); }
  Value scaleRows(Value acc, ArrayRef<Value> perSlot) override {
    Value factors = vector::FromElementsOp::create(
        b, loc, cType(), ValueRange{perSlot[0], perSlot[0], perSlot[1], perSlot[1]});
    return arith::MulFOp::create(b, loc, acc, factors);
  }
  /// O += P V, k = 16 keys per mma: P's A fragment for keys [16 t, 16 t +
  /// 16) is the S accumulators of n-tiles 2 t and 2 t + 1, converted.
  void accumulatePV(ArrayRef<Value> p, MutableArrayRef<Value> o) override {
    auto element = [&](int64_t n, int64_t i, int64_t j) {
      return arith::TruncFOp::create(b, loc, elt, p[n * 4 + i * 2 + j]);
    };
    for (int64_t t16 = 0; t16 < shape.keysPerTile / 16; ++t16) {
      SmallVector<Value> a;
      // Rows r and r + 8 of keys [16 t, 16 t + 8), then of [+8, +16).
      for (int64_t n : {2 * t16, 2 * t16 + 1})
        for (int64_t i = 0; i < 2; ++i)
          for (int64_t j = 0; j < 2; ++j)
            a.push_back(element(n, i, j));
      Value aFrag = vector::FromElementsOp::create(b, loc, aType(), a);
      for (int64_t d = 0; d < Dv / 8; ++d) {
        Value r = arith::AddIOp::create(b, loc, idx(t16 * 16), laneMod16);
        Value vFrag = nvgpu::LdMatrixOp::create(b, loc, bType(), bufV,
                                                ValueRange{stageRow(computeStage, r), idx(d * 8)},
                                                /*transpose=*/true, /*numTiles=*/2);
        o[d] = mma(aFrag, vFrag, o[d]);
      }
    }
  }
  SmallVector<Element> outputElements(ArrayRef<Value> o) override { return fragments(o); }
  Value ownsRowStats() override {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, colPair, idx(0));
  }

private:
  /// Row `r` of stage `stage` in a K/V buffer.
  Value stageRow(Value stage, Value r) {
    return arith::AddIOp::create(b, loc,
                                 arith::MulIOp::create(b, loc, stage, idx(shape.keysPerTile)), r);
  }
  Type tokenType() { return nvgpu::DeviceAsyncTokenType::get(b.getContext()); }
  /// Rows [row0, row0 + keysPerTile) of a K or V tensor into smem[stage]:
  /// each thread copies 8 elements per step (a loop: unrolled, the
  /// loop-invariant addresses of every copy would stay live in registers);
  /// rows past Skv read nothing (src-size 0) and are zero-filled.
  void copyAsync(Value global, Value smem, Value stage, Value row0, int64_t width) {
    int64_t perRow = width / 8, chunks = shape.keysPerTile * perRow;
    Value last = arith::SubIOp::create(b, loc, seqKV, idx(1));
    auto loop = scf::ForOp::create(b, loc, tid, idx(chunks), idx(shape.threads()));
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    Value r = arith::DivUIOp::create(b, loc, i, idx(perRow));
    Value c = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, i, idx(perRow)), idx(8));
    Value pos = arith::AddIOp::create(b, loc, row0, r);
    Value in = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, pos, seqKV);
    Value src = arith::SelectOp::create(b, loc, in, pos, last);
    Value count = arith::SelectOp::create(b, loc, in, idx(8), idx(0));
    nvgpu::DeviceAsyncCopyOp::create(b, loc, tokenType(), smem, ValueRange{stageRow(stage, r), c}, global,
                                     at(batch, headKV, src, c), b.getIndexAttr(8), count,
                                     b.getUnitAttr());
  }
  VectorType aType() { return VectorType::get({4, 2}, elt); }
  VectorType bType() { return VectorType::get({2, 2}, elt); }
  VectorType cType() { return VectorType::get({2, 2}, b.getF32Type()); }
  Value zeroC() {
    return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(cType(), b.getF32FloatAttr(0)));
  }
  /// The elements of m16n8 accumulators, n-tile by n-tile: (row slot i,
  /// column 8 n + 2 (l%4) + j).
  SmallVector<Element> fragments(ArrayRef<Value> acc) {
    SmallVector<Element> out;
    for (auto [n, c] : llvm::enumerate(acc))
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 2; ++j)
          out.push_back({vector::ExtractOp::create(b, loc, c, ArrayRef<int64_t>{i, j}),
                         unsigned(i),
                         arith::AddIOp::create(b, loc, idx(int64_t(n) * 8 + j), colPair)});
    return out;
  }
  /// C += A B on one m16n8k16 tensor-core op.
  Value mma(Value a, Value bFrag, Value c) {
    if (elt.isF16())
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
    return vector::FromElementsOp::create(b, loc, cType(), parts);
  }

  Value bufA, bufV; ///< shared memory [stage * keys + key][dim]: Q then K tiles; V tiles
  Value laneMod8, laneMod16, laneDiv16, half, warpRow, rowInWarp, colPair;
  SmallVector<Value> qFrag;
};

struct AttnLowerToNVGPUPass : heed::impl::AttnLowerToNVGPUBase<AttnLowerToNVGPUPass> {
  using Base::Base;
  void runOnOperation() override {
    if (keysPerTile != 0 && keysPerTile != 32 && keysPerTile != 64) {
      getOperation().emitError() << "--attn-lower-to-nvgpu: keys-per-tile must be 0 (by head "
                                    "dim), 32 or 64, not "
                                 << keysPerTile.getValue();
      return signalPassFailure();
    }
    if (warps != 1 && warps != 2 && warps != 4 && warps != 8) {
      getOperation().emitError() << "--attn-lower-to-nvgpu: warps must be 1, 2, 4 or 8, not "
                                 << warps.getValue();
      return signalPassFailure();
    }
    // Rows and threads do not depend on the tile's keys.
    TiledKernelLowering::Shape shape = NVGPUKernelLowering::kernelShape(64, 0, warps);
    int64_t keys = keysPerTile, w = warps;
    auto make = [keys, w](OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel) {
      return std::unique_ptr<GPUKernelLowering>(
          std::make_unique<NVGPUKernelLowering>(b, op, variant, kernel, keys, w));
    };
    // The buffers are dynamic shared memory (sized per kernel: see begin()).
    if (failed(lowerKernels(getOperation(), shape.blockRows(), shape.threads(), TypeRange{},
                            make)))
      signalPassFailure();
  }
};

} // namespace
