// The buffer summaries' device kernels: for each rank-1 or rank-2 integer
// buffer whose summary the block classifier reads (document ids and the
// like; VariantOp::getSummarizedBuffers), a kernel `heed_summary_<n>` (n the
// buffer's index) beside the attention kernel in `gpu.module @heed_gpu`, so
// that the runtime builds the table on the caller's stream instead of
// copying the buffer to the host, waiting for it, and uploading the table
// (docs/runtime.md, "Buffer summaries on the device"). One launch per level
// of the sparse table (heed/Runtime/BufferSummary.h), a thread per entry i
// of the level:
//
//   level 0:  table[0, i] = (min, max) of the buffer's entries [i g, i g + g)
//             (rank 2: rows end to end, each padded to whole blocks of g
//             with its last entry, as buildSummaryTable pads them)
//   level k:  table[k, i] = combine(table[k-1, i], table[k-1, i + 2^(k-1)])
//             where i + 2^k <= blocks
//
//   gpu.func @heed_summary_<n>(%buffer, %table: memref<?x?x2xi64>,
//       %level, %length, %row_length, %row_stride, %block, %as_bool: index)
//
// `length` is the padded entry count (rows x row_stride for rank 2),
// `as_bool` makes each entry 0 or 1 (a bool buffer: its i8 bytes != 0).
#include "MatrixCore.h"

#include "dialects/attn/AttnOps.h"
#include "heed/Runtime/BufferSummary.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace heed::attn;

namespace heed::gpu_tile {

namespace {

/// The entry e's value as i64: (row, column) of a rank-2 buffer from the
/// padded order, else element e; 0 or 1 where `asBool`.
Value entryValue(OpBuilder &b, Location loc, Value buffer, Value e, Value rowLength,
                 Value rowStride, Value asBool) {
  auto type = cast<MemRefType>(buffer.getType());
  Value loaded;
  if (type.getRank() == 2) {
    // (In 32 bits: the runtime builds tables of more than 2^31 - 1 entries
    // on the host; a GPU divides 64-bit integers in a subroutine.)
    Type i32 = b.getI32Type();
    auto narrow = [&](Value v) -> Value { return arith::IndexCastUIOp::create(b, loc, i32, v); };
    auto widen = [&](Value v) -> Value {
      return arith::IndexCastUIOp::create(b, loc, b.getIndexType(), v);
    };
    Value row = widen(arith::DivUIOp::create(b, loc, narrow(e), narrow(rowStride)));
    Value column = arith::MinUIOp::create(
        b, loc, widen(arith::RemUIOp::create(b, loc, narrow(e), narrow(rowStride))),
        arith::SubIOp::create(b, loc, rowLength, index(b, loc, 1)));
    loaded = memref::LoadOp::create(b, loc, buffer, ValueRange{row, column});
  } else {
    loaded = memref::LoadOp::create(b, loc, buffer, ValueRange{e});
  }
  Type i64 = b.getI64Type();
  Value wide = loaded.getType() == i64 ? loaded
                                       : Value(arith::ExtSIOp::create(b, loc, i64, loaded));
  Value zero = arith::ConstantIntOp::create(b, loc, 0, 64);
  Value bit = arith::ExtUIOp::create(
      b, loc, i64, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, wide, zero));
  Value isBool = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, asBool,
                                       index(b, loc, 0));
  return arith::SelectOp::create(b, loc, isBool, bit, wide);
}

void store(OpBuilder &b, Location loc, Value table, Value level, Value i, Value lo, Value hi) {
  memref::StoreOp::create(b, loc, lo, table, ValueRange{level, i, index(b, loc, 0)});
  memref::StoreOp::create(b, loc, hi, table, ValueRange{level, i, index(b, loc, 1)});
}

void buildSummaryKernel(OpBuilder &b, Location loc, StringRef name, MemRefType bufferType) {
  Type idx = b.getIndexType();
  auto tableType = MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic, 2},
                                   b.getI64Type());
  SmallVector<Type> args = {bufferType, tableType, idx, idx, idx, idx, idx, idx};
  auto kernel = gpu::GPUFuncOp::create(b, loc, name, b.getFunctionType(args, {}));
  kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  kernel.setKnownBlockSizeAttr(b.getDenseI32ArrayAttr({int32_t(kSummaryThreads), 1, 1}));
  Block &body = kernel.getBody().front();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&body);
  Value buffer = body.getArgument(0), table = body.getArgument(1), level = body.getArgument(2),
        length = body.getArgument(3), rowLength = body.getArgument(4),
        rowStride = body.getArgument(5), block = body.getArgument(6),
        asBool = body.getArgument(7);
  // Blocks of kSummaryThreads threads (a constant: AMD's block size query
  // would need the ROCm device libraries).
  Value i = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(b, loc, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x),
                            index(b, loc, kSummaryThreads)),
      gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x));
  Value blocks = memref::DimOp::create(b, loc, table, 1);
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, level, index(b, loc, 0));
  auto levels = scf::IfOp::create(b, loc, first, /*withElseRegion=*/true);
  {
    // Level 0: block i's entries.
    b.setInsertionPointToStart(levels.thenBlock());
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, i, blocks);
    auto guardIf = scf::IfOp::create(b, loc, inside, /*withElseRegion=*/false);
    b.setInsertionPointToStart(guardIf.thenBlock());
    Value from = arith::MulIOp::create(b, loc, i, block);
    Value to = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, from, block), length);
    Value lo0 = arith::ConstantIntOp::create(b, loc, std::numeric_limits<int64_t>::max(), 64);
    Value hi0 = arith::ConstantIntOp::create(b, loc, std::numeric_limits<int64_t>::min(), 64);
    auto loop = scf::ForOp::create(b, loc, from, to, index(b, loc, 1), ValueRange{lo0, hi0});
    {
      OpBuilder::InsertionGuard inLoop(b);
      b.setInsertionPointToStart(loop.getBody());
      Value v = entryValue(b, loc, buffer, loop.getInductionVar(), rowLength, rowStride, asBool);
      Value lo = arith::MinSIOp::create(b, loc, loop.getRegionIterArgs()[0], v);
      Value hi = arith::MaxSIOp::create(b, loc, loop.getRegionIterArgs()[1], v);
      scf::YieldOp::create(b, loc, ValueRange{lo, hi});
    }
    store(b, loc, table, level, i, loop.getResult(0), loop.getResult(1));
  }
  {
    // Level k: two runs of level k - 1.
    b.setInsertionPointToStart(levels.elseBlock());
    Value below = arith::SubIOp::create(b, loc, level, index(b, loc, 1));
    Value half = arith::ShLIOp::create(b, loc, index(b, loc, 1), below);
    Value span = arith::ShLIOp::create(b, loc, index(b, loc, 1), level);
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule,
                                         arith::AddIOp::create(b, loc, i, span), blocks);
    auto guardIf = scf::IfOp::create(b, loc, inside, /*withElseRegion=*/false);
    b.setInsertionPointToStart(guardIf.thenBlock());
    Value j = arith::AddIOp::create(b, loc, i, half);
    auto read = [&](Value at, int64_t which) -> Value {
      return memref::LoadOp::create(b, loc, table, ValueRange{below, at, index(b, loc, which)});
    };
    Value lo = arith::MinSIOp::create(b, loc, read(i, 0), read(j, 0));
    Value hi = arith::MaxSIOp::create(b, loc, read(i, 1), read(j, 1));
    store(b, loc, table, level, i, lo, hi);
  }
  b.setInsertionPointToEnd(&body);
  gpu::ReturnOp::create(b, loc);
}

} // namespace

void addSummaryKernels(ModuleOp module) {
  auto gpuModule = module.lookupSymbol<gpu::GPUModuleOp>("heed_gpu");
  if (!gpuModule)
    return;
  OpBuilder b(module.getContext());
  module.walk([&](VariantOp variant) {
    ArrayAttr types = variant.getBufferTypes();
    for (unsigned n : variant.getSummarizedBuffers()) {
      std::string name = summaryKernelName(n);
      if (gpuModule.lookupSymbol(name))
        continue;
      b.setInsertionPointToEnd(gpuModule.getBody());
      buildSummaryKernel(b, variant.getLoc(), name,
                         cast<MemRefType>(cast<TypeAttr>(types[n]).getValue()));
    }
  });
}

} // namespace heed::gpu_tile
