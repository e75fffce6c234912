// The routed-row lists' device kernel (heed/Runtime/GateRows.h): for a gated
// (MoH) variant, `heed_gate_rows` beside the attention kernel in
// `gpu.module @heed_gpu`, so that the runtime builds the lists on the
// caller's stream instead of copying the gate to the host, waiting for it,
// and uploading the lists (docs/runtime.md, "Routed rows on the device").
//
//   gpu.func @heed_gate_rows(%gate: <the gate buffer's memref type>,
//       %rows: memref<?xi32>, %counts: memref<?xi32>, %heads, %seq: index)
//
// One block of kGateRowsThreads threads per (b, h), block x = b * heads + h.
// Thread t takes the rows [t c, t c + c) (c = ceil(seq / threads)):
//
//   1. counts its routed rows (gate != 0: +-0 are the zeros, NaN is routed,
//      as buildGateRows reads the bits) into workgroup word t;
//   2. thread 0 turns the words into exclusive prefix sums, the total in
//      word `threads` and in counts[b * heads + h];
//   3. each thread places its run: a routed row at (rows routed before it),
//      another at total + (rows not routed before it) -- routed ascending,
//      then the others ascending, buildGateRows' order exactly.
#include "MatrixCore.h"

#include "dialects/attn/AttnOps.h"
#include "heed/Runtime/GateRows.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace heed::attn;

namespace heed::gpu_tile {

namespace {

/// Whether gate[b, q, h] (dims `dims`: of b, q, h) routes the row: its bits
/// but the sign are not all 0.
Value routes(OpBuilder &b, Location loc, Value gate, ArrayRef<int64_t> dims, Value batch,
             Value q, Value h) {
  auto type = cast<MemRefType>(gate.getType());
  SmallVector<Value> at(size_t(type.getRank()), index(b, loc, 0));
  at[size_t(dims[0])] = batch;
  at[size_t(dims[1])] = q;
  at[size_t(dims[2])] = h;
  Value x = memref::LoadOp::create(b, loc, gate, at);
  unsigned width = type.getElementType().getIntOrFloatBitWidth();
  Type bits = b.getIntegerType(width);
  Value magnitude = arith::AndIOp::create(
      b, loc, arith::BitcastOp::create(b, loc, bits, x),
      arith::ConstantIntOp::create(b, loc, bits, (int64_t(1) << (width - 1)) - 1));
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, magnitude,
                               arith::ConstantIntOp::create(b, loc, bits, 0));
}

void buildGateRowsKernel(OpBuilder &b, Location loc, MemRefType gateType,
                         ArrayRef<int64_t> dims) {
  Type idx = b.getIndexType(), i32 = b.getI32Type();
  auto list = MemRefType::get({ShapedType::kDynamic}, i32);
  auto kernel = gpu::GPUFuncOp::create(
      b, loc, kGateRowsKernel, b.getFunctionType({gateType, list, list, idx, idx}, {}));
  kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  kernel.setKnownBlockSizeAttr(b.getDenseI32ArrayAttr({int32_t(kGateRowsThreads), 1, 1}));
  auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  Value words = kernel.addWorkgroupAttribution(
      MemRefType::get({kGateRowsThreads + 1}, i32, MemRefLayoutAttrInterface(), workgroup), loc);
  Block &body = kernel.getBody().front();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&body);
  Value gate = body.getArgument(0), rows = body.getArgument(1), counts = body.getArgument(2),
        heads = body.getArgument(3), seq = body.getArgument(4);
  Value bh = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value t = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value batch = arith::DivUIOp::create(b, loc, bh, heads);
  Value h = arith::RemUIOp::create(b, loc, bh, heads);
  Value one = index(b, loc, 1);
  Value run = arith::CeilDivUIOp::create(b, loc, seq, index(b, loc, kGateRowsThreads));
  Value from = arith::MinUIOp::create(b, loc, arith::MulIOp::create(b, loc, t, run), seq);
  Value to = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, from, run), seq);
  auto asIndex = [&](Value on) -> Value {
    return arith::IndexCastUIOp::create(b, loc, idx, arith::ExtUIOp::create(b, loc, i32, on));
  };
  // 1. This thread's routed rows.
  auto count = scf::ForOp::create(b, loc, from, to, one, ValueRange{index(b, loc, 0)});
  {
    OpBuilder::InsertionGuard inLoop(b);
    b.setInsertionPointToStart(count.getBody());
    Value on = routes(b, loc, gate, dims, batch, count.getInductionVar(), h);
    scf::YieldOp::create(
        b, loc, ValueRange{arith::AddIOp::create(b, loc, count.getRegionIterArgs()[0], asIndex(on))});
  }
  auto toI32 = [&](Value v) -> Value { return arith::IndexCastUIOp::create(b, loc, i32, v); };
  memref::StoreOp::create(b, loc, toI32(count.getResult(0)), words, ValueRange{t});
  gpu::BarrierOp::create(b, loc);
  // 2. Exclusive prefix sums over the threads, by thread 0.
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, t, index(b, loc, 0));
  auto scan = scf::IfOp::create(b, loc, first, /*withElseRegion=*/false);
  {
    OpBuilder::InsertionGuard inIf(b);
    b.setInsertionPointToStart(scan.thenBlock());
    Value zero32 = arith::ConstantIntOp::create(b, loc, i32, 0);
    auto sum = scf::ForOp::create(b, loc, index(b, loc, 0), index(b, loc, kGateRowsThreads), one,
                                  ValueRange{zero32});
    {
      OpBuilder::InsertionGuard inLoop(b);
      b.setInsertionPointToStart(sum.getBody());
      Value i = sum.getInductionVar(), before = sum.getRegionIterArgs()[0];
      Value mine = memref::LoadOp::create(b, loc, words, ValueRange{i});
      memref::StoreOp::create(b, loc, before, words, ValueRange{i});
      scf::YieldOp::create(b, loc, ValueRange{arith::AddIOp::create(b, loc, before, mine)});
    }
    memref::StoreOp::create(b, loc, sum.getResult(0), words,
                            ValueRange{index(b, loc, kGateRowsThreads)});
    memref::StoreOp::create(b, loc, sum.getResult(0), counts, ValueRange{bh});
  }
  gpu::BarrierOp::create(b, loc);
  // 3. This thread's run placed.
  auto load = [&](Value at) -> Value {
    return arith::IndexCastUIOp::create(b, loc, idx,
                                        memref::LoadOp::create(b, loc, words, ValueRange{at}));
  };
  Value routedBefore = load(t);
  Value total = load(index(b, loc, kGateRowsThreads));
  Value base = arith::MulIOp::create(b, loc, bh, seq);
  Value othersAt = arith::AddIOp::create(b, loc, base, total);
  auto place = scf::ForOp::create(
      b, loc, from, to, one,
      ValueRange{routedBefore, arith::SubIOp::create(b, loc, from, routedBefore)});
  {
    OpBuilder::InsertionGuard inLoop(b);
    b.setInsertionPointToStart(place.getBody());
    Value q = place.getInductionVar();
    Value r = place.getRegionIterArgs()[0], u = place.getRegionIterArgs()[1];
    Value on = routes(b, loc, gate, dims, batch, q, h);
    Value at = arith::SelectOp::create(b, loc, on, arith::AddIOp::create(b, loc, base, r),
                                       arith::AddIOp::create(b, loc, othersAt, u));
    memref::StoreOp::create(b, loc, toI32(q), rows, ValueRange{at});
    Value step = asIndex(on);
    scf::YieldOp::create(b, loc,
                         ValueRange{arith::AddIOp::create(b, loc, r, step),
                                    arith::SubIOp::create(
                                        b, loc, arith::AddIOp::create(b, loc, u, one), step)});
  }
  gpu::ReturnOp::create(b, loc);
}

} // namespace

void addGateRowsKernel(ModuleOp module) {
  auto gpuModule = module.lookupSymbol<gpu::GPUModuleOp>("heed_gpu");
  if (!gpuModule || gpuModule.lookupSymbol(kGateRowsKernel))
    return;
  OpBuilder b(module.getContext());
  module.walk([&](VariantOp variant) {
    std::optional<ArrayRef<int64_t>> gate = variant.getGate();
    if (!gate || gate->size() != 4 || gpuModule.lookupSymbol(kGateRowsKernel))
      return;
    auto type = dyn_cast<MemRefType>(
        cast<TypeAttr>(variant.getBufferTypes()[size_t((*gate)[0])]).getValue());
    // (A rank-3 float buffer, dims of b, q, h a permutation: applyGate's.)
    if (!type || type.getRank() != 3 || !isa<FloatType>(type.getElementType()))
      return;
    b.setInsertionPointToEnd(gpuModule.getBody());
    buildGateRowsKernel(b, variant.getLoc(), type, gate->drop_front());
  });
}

} // namespace heed::gpu_tile
