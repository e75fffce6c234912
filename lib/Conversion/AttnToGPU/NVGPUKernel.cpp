// --attn-lower-to-nvgpu: the FlashAttention-2 tile loop (TiledKernel.cpp)
// on NVIDIA tensor cores, mma.sync m16n8k16 with f16 or bf16 in and f32
// accumulate. A block of 4 warps owns 64 query rows (16 per warp); K/V
// tiles of 64 keys are staged in shared memory (rows padded by 8 elements:
// no bank conflicts on ldmatrix); Q, K and V fragments come from
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
  static Shape kernelShape() {
    Shape s;
    s.waveSize = 32;
    s.waves = 4;
    s.rowsPerWave = 16;
    s.keysPerTile = 64;
    s.rowSlots = 2;
    return s;
  }
  NVGPUKernelLowering(OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel)
      : TiledKernelLowering(b, op, variant, kernel, kernelShape()) {}

protected:
  std::string unsupported() override {
    if (!elt.isF16() && !elt.isBF16())
      return "--attn-lower-to-nvgpu takes f16 or bf16";
    if (D % 16 || Dv % 16 || D > 128 || Dv > 128)
      return "--attn-lower-to-nvgpu needs head dims that are multiples of 16, at most 128 "
             "so far";
    return "";
  }
  void begin() override {
    bufA = kernel.getWorkgroupAttributions()[0];
    bufV = kernel.getWorkgroupAttributions()[1];
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
    stageTile(op.getQuery(), bufA, head, q0, seqQ, shape.blockRows(), D);
    gpu::BarrierOp::create(b, loc);
    for (int64_t kk = 0; kk < D / 16; ++kk) {
      Value r = arith::AddIOp::create(b, loc, warpRow, laneMod16);
      Value c = arith::AddIOp::create(b, loc, idx(kk * 16),
                                      arith::MulIOp::create(b, loc, laneDiv16, idx(8)));
      qFrag.push_back(nvgpu::LdMatrixOp::create(b, loc, aType(), bufA, ValueRange{r, c},
                                                /*transpose=*/false, /*numTiles=*/4));
    }
  }
  void stageKV(Value kv0) override {
    stageTile(op.getKey(), bufA, headKV, kv0, seqKV, shape.keysPerTile, D);
    stageTile(op.getValue(), bufV, headKV, kv0, seqKV, shape.keysPerTile, Dv);
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
        Value kFrag = nvgpu::LdMatrixOp::create(b, loc, bType(), bufA, ValueRange{r, col},
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
        Value vFrag = nvgpu::LdMatrixOp::create(b, loc, bType(), bufV, ValueRange{r, idx(d * 8)},
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

  Value bufA, bufV; ///< shared memory: Q then K tiles; V tiles
  Value laneMod8, laneMod16, laneDiv16, half, warpRow, rowInWarp, colPair;
  SmallVector<Value> qFrag;
};

struct AttnLowerToNVGPUPass : heed::impl::AttnLowerToNVGPUBase<AttnLowerToNVGPUPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Two shared-memory tiles: Q then K (Q lives in registers once loaded), and V.
    auto [width, elt] = widestOperand(module);
    TiledKernelLowering::Shape shape = NVGPUKernelLowering::kernelShape();
    auto space = gpu::AddressSpaceAttr::get(module.getContext(), gpu::AddressSpace::Workgroup);
    auto tile = MemRefType::get({std::max(shape.blockRows(), shape.keysPerTile),
                                 width + NVGPUKernelLowering::kPad},
                                elt, MemRefLayoutAttrInterface{}, space);
    auto make = [](OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel) {
      return std::unique_ptr<GPUKernelLowering>(
          std::make_unique<NVGPUKernelLowering>(b, op, variant, kernel));
    };
    if (failed(lowerKernels(module, shape.blockRows(), shape.threads(), TypeRange{tile, tile},
                            make)))
      signalPassFailure();
  }
};

} // namespace
