// --convert-attn-tile-to-simt: the tile ops as heed's portable SIMT GPU
// kernel (see SIMTPatterns.h): one thread per query row, the key tiles
// walked with an online softmax in f32, K and V read from global memory, the
// variant's regions inlined as scalar code. Any dtype and head dim, no
// matrix cores and no shared memory: the GPU baseline, which NVVM and ROCDL
// both lower, and the reference the matrix-core kernels are checked against.
// Here: the pass, the type converter, the shared helpers.
#include "heed/Conversion/Passes.h"

#include "SIMTPatterns.h"

#include "../TileCommon/KeyRows.h"

#include "dialects/attn/AttnOps.h"

namespace heed {
#define GEN_PASS_DEF_CONVERTATTNTILETOSIMT
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace heed::simt {

SIMTTypeConverter::SIMTTypeConverter(const KernelInfo &kernel) : kernel(kernel) {
  addConversion([](Type t) { return t; });
  addConversion([&kernel](TileType t, SmallVectorImpl<Type> &out) -> LogicalResult {
    MLIRContext *ctx = t.getContext();
    Type f32 = Float32Type::get(ctx), indexType = IndexType::get(ctx);
    switch (t.getRole()) {
    case TileRole::Q:
    case TileRole::Acc:
      out.push_back(MemRefType::get(
          {t.getCols()}, f32, MemRefLayoutAttrInterface{},
          gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Private)));
      return success();
    case TileRole::K:
    case TileRole::V:
      out.push_back(t.getRole() == TileRole::K ? kernel.keyType : kernel.valueType);
      out.append(4, indexType); // batch, head, first key, Skv
      if (kernel.pageTable)
        out.push_back(kernel.pageTable);
      return success();
    case TileRole::S:
      out.append(t.getCols(), f32);
      return success();
    case TileRole::Row:
      out.push_back(f32);
      return success();
    case TileRole::Col: // the backward's: not on the SIMT kernel
      return failure();
    }
    return failure();
  });
  addConversion([](SpanType t, SmallVectorImpl<Type> &out) -> LogicalResult {
    Type indexType = IndexType::get(t.getContext());
    out.append({indexType, indexType}); // as on matrix cores: gpu_tile::QueryRows
    return success();
  });
}

Value keyToken(OpBuilder &b, Location loc, Value first, Value seq, int64_t j) {
  // Key 0 is always real: the loops visit only tiles that start in the
  // sequence.
  if (j == 0)
    return first;
  Value t = arith::AddIOp::create(b, loc, first, index(b, loc, j));
  return arith::MinUIOp::create(b, loc, t, arith::SubIOp::create(b, loc, seq, index(b, loc, 1)));
}

std::pair<Value, Value> KeyTile::rowOf(OpBuilder &b, Location loc, Layout layout,
                                       Value token) const {
  int64_t pageSize = pages ? pageSizeOf(tensor, layout) : 0;
  return keyRow(b, loc, pages, pageSize, batch, token);
}

Value f32(OpBuilder &b, Location loc, double value) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(static_cast<float>(value)));
}

Value toF32(OpBuilder &b, Location loc, Value x) {
  if (x.getType().isF32())
    return x;
  return arith::ExtFOp::create(b, loc, b.getF32Type(), x);
}

scf::IfOp ifRowInSequence(OpBuilder &b, Location loc, Value first, Value seq, Value &row) {
  row = arith::AddIOp::create(b, loc, first, gpu_tile::threadId(b, loc));
  Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, row, seq);
  return scf::IfOp::create(b, loc, inside, /*withElseRegion=*/false);
}

void forEach(OpBuilder &b, Location loc, int64_t n, function_ref<void(Value)> body) {
  scf::ForOp::create(b, loc, index(b, loc, 0), index(b, loc, n), index(b, loc, 1), ValueRange{},
                     [&](OpBuilder &nested, Location, Value d, ValueRange) {
                       body(d);
                       scf::YieldOp::create(nested, loc);
                     });
}

namespace {

/// The kernel's K/V tensors and query rows, from its tile loads; errors for
/// what the SIMT kernel does not do.
FailureOr<KernelInfo> readKernel(gpu::GPUFuncOp kernel) {
  KernelInfo info;
  bool contiguous = false; // a k/v tile read without a page table
  WalkResult result = kernel.walk([&](Operation *op) {
    if (isa<TileCopyKVOp, TileWaitKVOp>(op) ||
        (isa<TileLoadOp>(op) && cast<TileLoadOp>(op).getStage())) {
      op->emitOpError() << "the SIMT kernel reads K/V from global memory: it takes no staged "
                           "tiles (do not run --attn-pipeline-kv)";
      return WalkResult::interrupt();
    }
    auto load = dyn_cast<TileLoadOp>(op);
    if (!load)
      return WalkResult::advance();
    auto type = cast<TileType>(load.getResult().getType());
    Type tensor = load.getTensor().getType();
    if (type.getRole() == TileRole::Q)
      info.rows = type.getRows();
    if (type.getRole() != TileRole::Q) {
      // Every k/v tile through one page table, or none through any.
      Value table = load.getPageTable();
      bool mixed = table ? (contiguous || (info.pageTable && info.pageTable != table.getType()))
                         : bool(info.pageTable);
      if (mixed) {
        op->emitOpError() << "reads K/V through a second page table, or with and without "
                             "one: one paged cache per kernel";
        return WalkResult::interrupt();
      }
      if (table)
        info.pageTable = table.getType();
      else
        contiguous = true;
    }
    Type &known = type.getRole() == TileRole::K ? info.keyType : info.valueType;
    if (type.getRole() != TileRole::Q && known && known != tensor) {
      op->emitOpError() << "reads a second K or V tensor: one attention per kernel";
      return WalkResult::interrupt();
    }
    if (type.getRole() == TileRole::K) {
      info.keyType = tensor;
      info.keyLayout = load.getLayout();
    } else if (type.getRole() == TileRole::V) {
      info.valueType = tensor;
      info.valueLayout = load.getLayout();
    }
    return WalkResult::advance();
  });
  if (result.wasInterrupted())
    return failure();
  if (!info.rows || !info.keyType || !info.valueType)
    return kernel.emitOpError() << "holds no attention tile loop";
  return info;
}

struct ConvertAttnTileToSIMTPass
    : heed::impl::ConvertAttnTileToSIMTBase<ConvertAttnTileToSIMTPass> {
  void runOnOperation() override {
    auto lower = [](gpu::GPUFuncOp kernel) -> LogicalResult {
      FailureOr<KernelInfo> info = readKernel(kernel);
      if (failed(info))
        return failure();
      if (attn::TileSpanOp span = gpu_tile::firstPatchedSpan(kernel))
        return span.emitOpError() << "patch tiles are not lowered to the SIMT kernel (choose "
                                     "flat tiles)";
      SIMTTypeConverter converter(*info);
      RewritePatternSet patterns(kernel.getContext());
      populateLoadStorePatterns(converter, patterns);
      populateMathPatterns(converter, patterns);
      if (failed(gpu_tile::convertGPUKernel(kernel, converter, std::move(patterns))))
        return failure();
      kernel->setAttr(kLaunchAttrName,
                      LaunchAttr::get(kernel.getContext(), info->rows, info->rows, 0, {}, {}));
      return success();
    };
    if (failed(gpu_tile::lowerGPUKernels(getOperation(), lower)))
      signalPassFailure();
  }
};

} // namespace
} // namespace heed::simt
