// --convert-attn-tile-to-hopper: the tile ops on Hopper (sm_90a), the
// MatrixCoreTarget of wgmma with TMA and mbarriers (issue 16, first step).
//
// One consumer warpgroup (4 warps) owns 64 query rows; a block holds
// blockRows / 64 of them. Q, K and V tiles come by TMA (cp.async.bulk.tensor,
// one 64-column box of 128-byte rows per TMA) into 128B-swizzled dynamic
// shared memory, each load completing on an mbarrier: one per consumer
// warpgroup for its 64 rows of Q (issued by the warpgroup's first thread;
// once per block, or once per item of a persistent worker), one per K/V
// staging slot of --attn-pipeline-kv. Thread 0 issues the K/V copies
// (arrive.expect_tx, then the TMAs); every thread waits on the slot's barrier
// (try_wait.parity) where attn.tile.wait_kv stands, then on the block's
// barrier (the slot the next prefetch takes is free).
//
// S = Q K^T is SS wgmma (both operands by shared-memory descriptor,
// nvvm.wgmma.mma_async m64nKk16, one per 16 head-dim columns, then one commit
// and wait). O += P V is RS wgmma: P goes from the S accumulators straight
// into A registers (the register layout of wgmma's A is mma.sync's), V by a
// descriptor of its MN-major (transposed) tile. The RS form is llvm.inline_asm
// with tied accumulator operands: MLIR 22's nvvm.wgmma.mma_async takes only
// descriptors, and nvvm.inline_ptx gives no SSA value for a read-write
// operand. RS rather than SS because P needs no trip through shared memory,
// no proxy fence and no extra barrier.
//
// The accumulators (S, O) keep mma.sync's per-warp m16n8 fragments
// (WarpFragmentTarget), so the variant, the softmax and the epilogue are the
// NVIDIA patterns'. The tensor maps are three kernel parameters appended
// after the others (Q, K, V, listed in `heed.tensor_maps`; a backward
// kernel's four: its two operand tiles' tensors, then its slots' two), which
// --heed-tensor-map-params makes byval `nvvm.grid_constant` parameters once
// the kernel is an llvm.func; the runtime builds them (cuTensorMapEncodeTiled).
//
// Every tile of the key loop's range is copied, EMPTY ones too (the copy is
// taken out of the pipeline's EMPTY guard): each slot's barrier then completes
// one phase per tile, so the parity a tile waits for follows from its index.
// EMPTY tiles are still not computed.
#include "heed/Conversion/HopperRegisters.h"
#include "heed/Conversion/Passes.h"
#include "heed/Transforms/StagedKeyLoop.h"

#include "../TileCommon/KeyRows.h"
#include "../TileToNVGPU/WarpFragments.h"

#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include "llvm/ADT/SetVector.h"

namespace heed {
#define GEN_PASS_DEF_CONVERTATTNTILETOHOPPER
#define GEN_PASS_DEF_HEEDTENSORMAPPARAMS
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::gpu_tile;
using heed::attn::Layout;

namespace {

constexpr int64_t kBoxCols = 64;    ///< f16/bf16 columns of a 128-byte swizzled row
constexpr int64_t kRowBytes = 128;  ///< a row of a TMA box
constexpr int64_t kAtomBytes = 1024; ///< 8 rows: the 128B swizzle pattern's period
constexpr int64_t kMapBytes = 128;  ///< a CUtensorMap
constexpr int64_t kWarpgroup = 128; ///< threads of a warpgroup
constexpr llvm::StringLiteral kTensorMapsAttr = "heed.tensor_maps";

class HopperTarget : public WarpFragmentTarget {
public:
  using WarpFragmentTarget::WarpFragmentTarget;

  std::string unsupported() const override {
    Type elt = shape.elt;
    if (!elt.isF16() && !elt.isBF16())
      return "wgmma takes f16 or bf16";
    if (shape.headDim % kBoxCols || shape.valueDim % kBoxCols || shape.headDim > 256 ||
        shape.valueDim > 256)
      return "the wgmma kernel needs head dims that are multiples of 64, at most 256";
    if (shape.keys % 16 || shape.keys > 256)
      return "the wgmma kernel needs key tiles of a multiple of 16 keys, at most 256";
    if (shape.blockRows() % 64 || shape.blockRows() > 256)
      return "the wgmma kernel needs query tiles of 64 rows per warpgroup (at most 4)";
    // (A tile's operand fragments are one descriptor per headDim columns.)
    if (shape.backward && shape.headDim != shape.valueDim)
      return "the wgmma backward needs the same head dim for q/k and v";
    // (`specialized` is not known yet: count the warp-specialized barriers.)
    int64_t bytes = sharedBytes(heed::hopperBarriers(shape.blockRows(), shape.stages,
                                                     !shape.backward, shape.backward));
    if (bytes > heed::kHopperSharedPerBlock)
      return "the wgmma kernel's tiles need " + std::to_string(bytes) +
             " bytes of shared memory, more than a Hopper block's " +
             std::to_string(heed::kHopperSharedPerBlock) +
             " (fewer keys per tile or staging slots)";
    return "";
  }

  /// Q stays in shared memory: its "fragment" is the wgmma descriptor of
  /// the warpgroup's 64 rows (one per tile).
  std::pair<VectorType, int64_t> operandFragment(MLIRContext *ctx) const override {
    return {VectorType::get({1}, IntegerType::get(ctx, 64)), shape.headDim};
  }

  /// The item's operand tiles ("q" tiles), each in its own buffer: Q in
  /// the forward; in the backward part 0 (K, or Q: headDim wide) and part 1
  /// (V, or dO: valueDim wide). Then the staging slots' tensors 0 and 1
  /// (K and V; in the backward Q and dO, or K and V).
  int64_t operandParts() const { return shape.backward ? 2 : 1; }
  int64_t operandWidth(int64_t part) const { return part ? shape.valueDim : shape.headDim; }
  int64_t operandOffset(int64_t part) const {
    return part ? shape.blockRows() * shape.headDim * 2 : 0;
  }
  int64_t qBytes() const {
    return shape.blockRows() * (shape.backward ? shape.headDim + shape.valueDim : shape.headDim) *
           2;
  }
  int64_t kBytes() const { return shape.keys * shape.headDim * 2; }
  int64_t vBytes() const { return shape.keys * shape.valueDim * 2; }
  int64_t kOffset() const { return qBytes(); }
  int64_t vOffset() const { return qBytes() + shape.stages * kBytes(); }
  /// Slot tensor `part`'s buffer and width.
  int64_t slotOffset(int64_t part) const { return part ? vOffset() : kOffset(); }
  int64_t slotBytes(int64_t part) const { return part ? vBytes() : kBytes(); }
  /// Barrier p Q_w + w (p < operandParts(), w < Q_w = warpgroups()) is
  /// consumer warpgroup w's rows of operand tile p, then Q_n + s (Q_n =
  /// qBarriers()) slot s's (its fill has landed). Warp-specialized, Q_n + s
  /// slot s's K, Q_n + stages + s its V (so that Q K^T need not wait for
  /// V), Q_n + 2 stages + s its release (every consumer thread is done
  /// with it).
  int64_t barrierOffset() const { return vOffset() + shape.stages * vBytes(); }
  int64_t warpgroups() const { return consumerThreads() / kWarpgroup; }
  int64_t qBarriers() const { return warpgroups() * operandParts(); }
  int64_t barriers() const {
    return heed::hopperBarriers(shape.blockRows(), shape.stages, specialized, shape.backward);
  }
  /// Warp-specialized, the last barrier is the producer's own (copyKV's clearing),
  /// initialized where it is used, not at the kernel's entry.
  int64_t scratchBarrier() const { return barriers() - 1; }
  int64_t enteredBarriers() const { return specialized ? barriers() - 1 : barriers(); }
  /// The layout above (heed::hopperSharedBytes, which compileCUDA sizes the
  /// staging slots with) with `barriers` mbarriers.
  int64_t sharedBytes(int64_t barriers) const {
    return heed::hopperSharedBytes(shape.blockRows(), shape.headDim, shape.valueDim, shape.keys,
                                   shape.stages, barriers, shape.backward);
  }
  int64_t dynamicSharedBytes() const override { return sharedBytes(barriers()); }
  /// The threads of the consumer warpgroups (the query rows' owners).
  int64_t consumerThreads() const { return shape.threads(); }

  LogicalResult prepareKernel(gpu::GPUFuncOp kernel) override;

  int64_t launchThreads() const override {
    return consumerThreads() + (specialized ? kWarpgroup : 0);
  }

  /// Each consumer warpgroup loads its own 64 rows (a TMA box of 64 rows
  /// per 64 columns, issued by its first thread) onto its own barrier, so
  /// that a persistent worker's warpgroups move on to the next item's Q
  /// independently. `round` (a persistent worker's j-th Q): the barrier's
  /// phase j; before the load the warpgroup's threads meet (named barrier
  /// 1 + consumers + w), so that the previous Q's wgmma have completed in
  /// all four warps. (Flat tiles: TMA reads rows first .. first + rows;
  /// gated tiles, whose rows come from a list, are refused by the pass.)
  /// A backward kernel's operand tile `part` goes to its own buffer, on
  /// its own barriers.
  SmallVector<Value> loadQ(OpBuilder &b, Location loc, Value q, Value batch, Value head,
                           const QueryRows &queries, Layout layout, int64_t, int64_t part,
                           Value round) const override {
    Value group = warpgroup(b, loc);
    int64_t width = operandWidth(part);
    Value rows = arith::AddIOp::create(b, loc, base(b, loc, operandOffset(part)),
                                       arith::MulIOp::create(b, loc, group,
                                                             index(b, loc, 64 * kRowBytes)));
    Value bar = sharedPtr(
        b, loc,
        barrier(b, loc,
                arith::AddIOp::create(b, loc, group, index(b, loc, part * warpgroups()))));
    if (round)
      NVVM::BarrierOp::create(
          b, loc, TypeRange{},
          arith::IndexCastOp::create(
              b, loc, b.getI32Type(),
              arith::AddIOp::create(b, loc, group, index(b, loc, 1 + warpgroups()))),
          i32(b, loc, kWarpgroup), NVVM::BarrierReductionAttr(), Value());
    {
      Value lane = arith::RemUIOp::create(b, loc, threadId(b, loc), index(b, loc, kWarpgroup));
      auto leader = scf::IfOp::create(
          b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, lane, index(b, loc, 0)),
          /*withElseRegion=*/false);
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&leader.getThenRegion().front());
      expectBytes(b, loc, bar, 64 * width * 2);
      Value row0 = arith::AddIOp::create(b, loc, queries.first,
                                         arith::MulIOp::create(b, loc, group, index(b, loc, 64)));
      tma(b, loc, q, rows, bar, 64, width, layout, batch, head, row0,
          /*boxStride=*/shape.blockRows() * kRowBytes);
    }
    wait(b, loc, bar, round ? parityOf(b, loc, round) : i32(b, loc, 0));
    // This warpgroup's 64 rows of each column box.
    Value desc = descriptor(b, loc, rows, /*leading=*/16, /*stride=*/kAtomBytes);
    return {vector::FromElementsOp::create(b, loc, VectorType::get({1}, b.getI64Type()),
                                           ValueRange{desc})};
  }

  /// Thread 0: the slot's barrier expects the K and V bytes, then the TMAs.
  /// Warp-specialized, the producer's one thread runs the copies as they
  /// are; where V's rows past `seq` are not zeros already (zeroFilled),
  /// the producer clears them before the consumers may read V. A paged
  /// cache (`pages`): a TMA box per page of the tile (pagedRows), each
  /// from its page's rows, and only the boxes that start inside the entry
  /// (the table holds no page past it).
  void copyKV(OpBuilder &b, Location loc, Value k, Value v, Value batch, Value head,
              const QueryRows &keys, Value stage, Layout layout, Value pages) const override {
    Value kv0 = keys.first, seq = keys.end;
    OpBuilder::InsertionGuard g(b);
    if (!specialized) {
      auto leader = ifLeader(b, loc);
      b.setInsertionPointToStart(&leader.getThenRegion().front());
    }
    Value kBar = sharedPtr(b, loc, barrier(b, loc, fillBarrier(b, loc, stage, 0)));
    Value vBar = specialized ? sharedPtr(b, loc, barrier(b, loc, fillBarrier(b, loc, stage, 1)))
                             : kBar;
    Value boxes = pageBoxes(b, loc, pages, kv0, seq);
    Value kTx = tileBytes(b, loc, pages, boxes, shape.headDim);
    Value vTx = tileBytes(b, loc, pages, boxes, shape.valueDim);
    expectBytes(b, loc, kBar, specialized ? kTx : Value(arith::AddIOp::create(b, loc, kTx, vTx)));
    tileRows(b, loc, k, slotBase(b, loc, kOffset(), kBytes(), stage), kBar, shape.headDim, layout,
             batch, head, kv0, pages, boxes);
    Value vSlot = slotBase(b, loc, vOffset(), vBytes(), stage);
    auto copyV = [&](OpBuilder &at) {
      if (specialized)
        expectBytes(at, loc, vBar, vTx);
      tileRows(at, loc, v, vSlot, vBar, shape.valueDim, layout, batch, head, kv0, pages, boxes);
    };
    if (!specialized || zeroFilled(seq))
      return copyV(b);
    auto [kept, partial] = ifEndsPastEntry(b, loc, kv0, seq, /*withElse=*/true);
    OpBuilder whole = OpBuilder::atBlockTerminator(&partial.getElseRegion().front());
    copyV(whole);
    OpBuilder in = OpBuilder::atBlockTerminator(&partial.getThenRegion().front());
    // A V tile that ends past its entry: onto the producer's own barrier
    // (made anew for it: one thread uses it, one phase a time), waited for,
    // the rows from `kept` cleared, the clearing fenced for the async proxy
    // (the consumers' wgmma), then one plain arrival completes the slot's V
    // barrier: the consumers see the cleared tile or none.
    Value own = sharedPtr(in, loc, barrier(in, loc, index(in, loc, scratchBarrier())));
    NVVM::MBarrierInitOp::create(in, loc, own, i32(in, loc, 1), Value());
    fenceAsync(in, loc);
    expectBytes(in, loc, own, vTx);
    tileRows(in, loc, v, vSlot, own, shape.valueDim, layout, batch, head, kv0, pages, boxes);
    wait(in, loc, own, i32(in, loc, 0));
    clearRows(in, loc, vSlot, shape.valueDim, kept, index(in, loc, 0), 1);
    fenceAsync(in, loc);
    NVVM::MBarrierInvalOp::create(in, loc, own);
    NVVM::MBarrierArriveOp::create(in, loc, Type(), vBar, Value());
  }

  /// The TMA boxes of a tile at kv0 (per 64 columns): one, or with a page
  /// table and pages smaller than the tile those of its pages that start
  /// inside the entry (a page past the entry's keys has no table entry).
  Value pageBoxes(OpBuilder &b, Location loc, Value pages, Value kv0, Value seq) const {
    if (!pages || pagedRows >= shape.keys)
      return index(b, loc, 1);
    Value kept =
        arith::MinUIOp::create(b, loc, keptRows(b, loc, kv0, seq), index(b, loc, shape.keys));
    return arith::CeilDivUIOp::create(b, loc, kept, index(b, loc, pagedRows));
  }
  /// The bytes `boxes` boxes of a tensor `width` columns wide bring (i32).
  Value tileBytes(OpBuilder &b, Location loc, Value pages, Value boxes, int64_t width) const {
    int64_t rows = pages ? pagedRows : shape.keys;
    Value bytes = arith::MulIOp::create(b, loc, boxes, index(b, loc, rows * width * 2));
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), bytes);
  }
  /// Rows [kv0, kv0 + keys) of `tensor` into the slot at `dst`: one box of
  /// the tile, or `boxes` boxes of pagedRows rows from the pages the table
  /// gives (box j: token kv0 + j pagedRows, at its page's row token mod P,
  /// pagedRows x 128 bytes further into each 64-column box; pagedRows >= 8
  /// keeps the 128B swizzle's 1024-byte period).
  void tileRows(OpBuilder &b, Location loc, Value tensor, Value dst, Value bar, int64_t width,
                Layout layout, Value batch, Value head, Value kv0, Value pages,
                Value boxes) const {
    if (!pages) {
      tma(b, loc, tensor, dst, bar, shape.keys, width, layout, batch, head, kv0);
      return;
    }
    int64_t pageSize = heed::pageSizeOf(tensor, layout);
    auto loop = scf::ForOp::create(b, loc, index(b, loc, 0), boxes, index(b, loc, 1));
    OpBuilder in = OpBuilder::atBlockTerminator(loop.getBody());
    Value j = loop.getInductionVar();
    Value token = arith::AddIOp::create(
        in, loc, kv0, arith::MulIOp::create(in, loc, j, index(in, loc, pagedRows)));
    auto [page, row] = heed::keyRow(in, loc, pages, pageSize, batch, token);
    Value at = arith::AddIOp::create(
        in, loc, dst, arith::MulIOp::create(in, loc, j, index(in, loc, pagedRows * kRowBytes)));
    tileByTMA(in, loc, tensorMaps.lookup(tensor), at, bar, pagedRows, width, layout, page, head,
              row, /*boxStride=*/shape.keys * kRowBytes);
  }

  /// Without warp specialization every thread has waited for the slot: a
  /// tile that ends past its entry has the rows from `kept` cleared by the
  /// block (fenced for the async proxy, then the block's barrier) before
  /// any wgmma reads them. The forward clears V (K's rows past the entry
  /// give scores the mask drops; V's would give 0 x NaN in P V); the
  /// backward clears both of its slot tensors (V and dO reach dP and dV).
  /// (Once per slot and tile: the first of the tile's staged loads clears
  /// every tensor that needs it; the backward reads a slot tensor twice.)
  void readStaged(OpBuilder &b, Location loc, Value, Value stage, int64_t part, Value kv0,
                  Value seq) const override {
    if (specialized || (!shape.backward && part != 1) || zeroFilled(seq) ||
        !clearedSlots.insert({b.getInsertionBlock(), stage}).second)
      return;
    auto [kept, partial] = ifEndsPastEntry(b, loc, kv0, seq, /*withElse=*/false);
    OpBuilder in = OpBuilder::atBlockTerminator(&partial.getThenRegion().front());
    for (int64_t p = shape.backward ? 0 : 1; p < 2; ++p)
      clearRows(in, loc, slotBase(in, loc, slotOffset(p), slotBytes(p), stage),
                p ? shape.valueDim : shape.headDim, kept, threadId(in, loc), consumerThreads());
    fenceAsync(in, loc);
    gpu::BarrierOp::create(in, loc);
  }

  /// The barrier of the tile this iteration of the key loop computes (tile
  /// t in slot (t / step) % stages, its ((t - first) / step) / stages-th use:
  /// that parity), then the block's barrier.
  void waitKV(OpBuilder &b, Location loc, int64_t pending) const override {
    Value slot = index(b, loc, 0), use = index(b, loc, 0);
    Operation *parent = b.getInsertionBlock()->getParentOp();
    auto loop = dyn_cast<scf::ForOp>(parent);
    if (!loop)
      loop = parent->getParentOfType<scf::ForOp>();
    if (loop) {
      Value iv = loop.getInductionVar();
      Value n = index(b, loc, shape.stages);
      // Tile t's iteration and slot (--attn-pipeline-kv's convention).
      Value tile =
          heed::divideByStep(b, loc, loop, arith::SubIOp::create(b, loc, iv, loop.getLowerBound()));
      slot = heed::stagedSlot(b, loc, loop, iv, shape.stages);
      use = arith::DivUIOp::create(b, loc, tile, n);
    }
    Value parity = arith::IndexCastOp::create(
        b, loc, b.getI32Type(), arith::AndIOp::create(b, loc, use, index(b, loc, 1)));
    wait(b, loc,
         sharedPtr(b, loc,
                   barrier(b, loc, arith::AddIOp::create(b, loc, slot, index(b, loc, qBarriers())))),
         parity);
    gpu::BarrierOp::create(b, loc);
  }

  /// The producer: slot `stage`'s release barrier has completed the phase
  /// of fill round - 1 (parity (round - 1) mod 2, i.e. (round mod 2) xor 1:
  /// a fresh barrier counts the phase before its first as complete, so
  /// round 0 passes at once).
  LogicalResult acquireKV(OpBuilder &b, Location loc, Value stage, Value round) const override {
    wait(b, loc, sharedPtr(b, loc, barrier(b, loc, releaseBarrier(b, loc, stage))),
         arith::XOrIOp::create(b, loc, parityOf(b, loc, round), i32(b, loc, 1)));
    return success();
  }
  /// A consumer: slot `stage`'s fill barrier of `part` (K, V; none: both)
  /// has completed phase `round`.
  LogicalResult waitFill(OpBuilder &b, Location loc, Value stage, Value round,
                         std::optional<int64_t> part) const override {
    for (int64_t p = 0; p < 2; ++p)
      if (!part || *part == p)
        wait(b, loc, sharedPtr(b, loc, barrier(b, loc, fillBarrier(b, loc, stage, p))),
             parityOf(b, loc, round));
    return success();
  }
  /// A consumer thread arrives on slot `stage`'s release barrier (it counts
  /// every consumer thread); the wgmma reading the slot have completed
  /// (scores and accumulatePV wait for their groups; async products are
  /// waited for by the attn.tile.mma_wait before the release).
  LogicalResult releaseKV(OpBuilder &b, Location loc, Value stage) const override {
    NVVM::MBarrierArriveOp::create(b, loc, Type(),
                                   sharedPtr(b, loc, barrier(b, loc, releaseBarrier(b, loc, stage))),
                                   Value());
    return success();
  }

  /// S = Q K^T: m64nKk16 wgmma over the head dim, K by its descriptor
  /// (slot tensor `part`: the backward's S^T = K Q^T, dP^T = V dO^T, S = Q
  /// K^T and dP = dO V^T alike).
  SmallVector<Value> scores(OpBuilder &b, Location loc, ValueRange q, Value stage,
                            int64_t part) const override {
    Value acc = issueScores(b, loc, q, stage, part);
    if (pingpong) // issued: the next warpgroup's turn (its P V, its next Q K^T)
      passTurn(b, loc);
    NVVM::WgmmaWaitGroupSyncOp::create(b, loc, b.getI64IntegerAttr(0));
    return unpack(b, loc, pinAfterWait(b, loc, acc), shape.keys);
  }

  /// O += P V, 16 keys per RS wgmma m64nDk16: P's A registers from the S
  /// accumulators, V (MN-major: value dims contiguous) by descriptor --
  /// column boxes `keys` rows apart (leading), 8-key groups 1024 bytes
  /// apart (stride). (The backward's dV += P^T dO, dK += dS^T Q and dQ +=
  /// dS K: slot tensor `part` as V.)
  void accumulatePV(OpBuilder &b, Location loc, ArrayRef<Value> p, Value stage, int64_t part,
                    MutableArrayRef<Value> o) const override {
    if (pingpong) // this warpgroup's turn: its P V, then its next Q K^T
      takeTurn(b, loc);
    Value out = issuePV(b, loc, p, stage, part, o);
    NVVM::WgmmaWaitGroupSyncOp::create(b, loc, b.getI64IntegerAttr(0));
    SmallVector<Value> frags = unpack(b, loc, pinAfterWait(b, loc, out), 8 * int64_t(o.size()));
    llvm::copy(frags, o.begin());
  }

  /// --attn-overlap-softmax: the products issued and committed, not waited
  /// for (the turns are explicit ops then: `turn`). The fragments read the
  /// wgmma's results directly; only waitProducts' pinned copies may be
  /// read (the emulator faults a read of a register a pending wgmma writes).
  bool asyncProducts() const override { return true; }
  SmallVector<Value> scoresAsync(OpBuilder &b, Location loc, ValueRange q, Value stage,
                                 int64_t part) const override {
    return unpack(b, loc, issueScores(b, loc, q, stage, part), shape.keys);
  }
  void accumulatePVAsync(OpBuilder &b, Location loc, ArrayRef<Value> p, Value stage,
                         int64_t part, MutableArrayRef<Value> o) const override {
    Value out = issuePV(b, loc, p, stage, part, o);
    llvm::copy(unpack(b, loc, out, 8 * int64_t(o.size())), o.begin());
  }
  /// wgmma.wait_group `pending`, then every element of `fragments` through
  /// one empty asm statement (pinAfterWait), so that no read of them moves
  /// above the wait.
  void waitProducts(OpBuilder &b, Location loc, int64_t pending,
                    MutableArrayRef<Value> fragments) const override {
    NVVM::WgmmaWaitGroupSyncOp::create(b, loc, b.getI64IntegerAttr(pending));
    SmallVector<Value> elements = elementsOf(b, loc, fragments);
    if (elements.empty())
      return;
    auto type = LLVM::LLVMStructType::getLiteral(
        b.getContext(), SmallVector<Type>(elements.size(), b.getF32Type()));
    Value done = pinned(b, loc, type, elements);
    for (auto [f, frag] : llvm::enumerate(fragments)) {
      SmallVector<Value> e;
      for (int64_t i = 0; i < 4; ++i)
        e.push_back(LLVM::ExtractValueOp::create(b, loc, done, ArrayRef<int64_t>{int64_t(f) * 4 + i}));
      frag = vector::FromElementsOp::create(b, loc, cType(b.getContext()), e);
    }
  }
  void turn(OpBuilder &b, Location loc, bool take) const override {
    if (!pingpong)
      return;
    if (take)
      takeTurn(b, loc);
    else
      passTurn(b, loc);
  }

private:
  /// The kernel's tensor map parameter of each tensor (prepareKernel).
  llvm::DenseMap<Value, Value> tensorMaps;
  /// Whether the kernel has a producer warpgroup (attn.tile.warp_specialize).
  bool specialized = false;
  /// A paged cache's rows per TMA box: a page's, or the tile's where pages
  /// hold whole tiles (prepareKernel); the tile's without pages.
  int64_t pagedRows = 0;
  /// (block, slot) pairs whose tile readStaged cleared already.
  mutable llvm::DenseSet<std::pair<Block *, Value>> clearedSlots;
  /// Whether its consumer warpgroups take turns at the matrix units.
  bool pingpong = false;

  /// Ping-pong (FlashAttention-3's): consumer warpgroup w's turn is named
  /// barrier 1 + w of 256 threads -- w's 128 waiting (bar.sync) and the
  /// previous warpgroup's 128 arriving (bar.arrive) once it has issued its
  /// products -- so the warpgroups' products run in turn, each one's
  /// softmax beside the other's products. Synchronous products: a turn
  /// spans this tile's P V and the next tile's Q K^T (no softmax between
  /// them): it is taken before accumulatePV and passed after scores. Async
  /// products (--attn-overlap-softmax): the turns are attn.tile.take_turn /
  /// pass_turn ops (`turn`). Either way, taken once before the first Q K^T
  /// (warpgroup 0 arrives on its own barrier first) and passed once after
  /// the last P V (but by the last warpgroup, whose turn nobody takes).
  Value warpgroup(OpBuilder &b, Location loc) const {
    return arith::DivUIOp::create(b, loc, threadId(b, loc), index(b, loc, kWarpgroup));
  }
  Value turnBarrier(OpBuilder &b, Location loc, Value group) const {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(),
                                      arith::AddIOp::create(b, loc, group, index(b, loc, 1)));
  }
  Value nextGroup(OpBuilder &b, Location loc) const {
    return arith::RemUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, warpgroup(b, loc), index(b, loc, 1)),
        index(b, loc, consumerThreads() / kWarpgroup));
  }
  void takeTurn(OpBuilder &b, Location loc) const {
    NVVM::BarrierOp::create(b, loc, TypeRange{}, turnBarrier(b, loc, warpgroup(b, loc)),
                            i32(b, loc, 2 * kWarpgroup), NVVM::BarrierReductionAttr(), Value());
  }
  void passTurn(OpBuilder &b, Location loc) const {
    NVVM::BarrierArriveOp::create(b, loc, turnBarrier(b, loc, nextGroup(b, loc)),
                                  i32(b, loc, 2 * kWarpgroup));
  }

  /// Q K^T's wgmma issued and committed (fence, one per 16 head-dim
  /// columns, commit): the accumulator struct, not yet complete. K: slot
  /// tensor `part`.
  Value issueScores(OpBuilder &b, Location loc, ValueRange q, Value stage, int64_t part) const {
    Value qDesc = vector::ExtractOp::create(b, loc, q.front(), ArrayRef<int64_t>{0});
    // (The dK/dV kernel's above D = 64: through an asm statement here, so
    // that LLVM does not hoist the operand's per-step descriptors (2
    // registers each, 16 steps at D = 128 for S^T and dP^T) out of the query
    // loop, live beside dK and dV. ptxas: fewer spills at D = 128, more at
    // D = 64; docs/backward.md.)
    if (shape.keyMajor && shape.headDim > 64)
      qDesc = inlineAsm(b, loc, b.getI64Type(), ValueRange{qDesc}, "mov.b64 $0, $1;", "=l,l");
    Value kDesc = descriptor(b, loc, slotBase(b, loc, slotOffset(part), slotBytes(part), stage), 16,
                             kAtomBytes);
    // The first wgmma does not read D (scale-d 0): no registers to zero
    // after the fence.
    Value acc = LLVM::PoisonOp::create(b, loc, accumulatorStruct(b.getContext(), shape.keys));
    NVVM::WgmmaFenceAlignedOp::create(b, loc);
    for (int64_t kk = 0; kk < operandWidth(part) / 16; ++kk) {
      // Column box kk / 4, 32 bytes (16 columns) into its swizzled rows.
      int64_t inBox = (kk % 4) * 32;
      Value a = advance(b, loc, qDesc, (kk / 4) * shape.blockRows() * kRowBytes + inBox);
      Value bDesc = advance(b, loc, kDesc, (kk / 4) * shape.keys * kRowBytes + inBox);
      acc = wgmma(b, loc, acc, a, bDesc, shape.keys, /*accumulate=*/kk > 0);
    }
    NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
    return acc;
  }
  /// P V's RS wgmma issued and committed into `o`: the accumulator struct,
  /// not yet complete. V: slot tensor `part`.
  Value issuePV(OpBuilder &b, Location loc, ArrayRef<Value> p, Value stage, int64_t part,
                ArrayRef<Value> o) const {
    Value vDesc = descriptor(b, loc, slotBase(b, loc, slotOffset(part), slotBytes(part), stage),
                             shape.keys * kRowBytes, kAtomBytes);
    SmallVector<Value> d = elementsOf(b, loc, o);
    SmallVector<Value> a, descs;
    for (int64_t t = 0; t < shape.keys / 16; ++t) {
      llvm::append_range(a, packPairs(b, loc, pOperand(b, loc, p, t)));
      descs.push_back(advance(b, loc, vDesc, t * 16 * kRowBytes));
    }
    Value out = wgmmaRS(b, loc, d, a, descs);
    NVVM::WgmmaGroupSyncAlignedOp::create(b, loc);
    return out;
  }

  /// Replaces the kernel's attn.tile.warp_specialize by the branch on the
  /// thread's warpgroup (prepareKernel).
  LogicalResult lowerWarpSpecialize(heed::attn::TileWarpSpecializeOp op);
  /// Key loops nested in another loop restart their slots' barriers
  /// (prepareKernel, without warp specialization).
  void restartNestedKeyLoops(gpu::GPUFuncOp kernel);

  Value releaseBarrier(OpBuilder &b, Location loc, Value stage) const {
    return arith::AddIOp::create(b, loc, stage, index(b, loc, qBarriers() + 2 * shape.stages));
  }
  /// Slot `stage`'s fill barrier: of K (part 0) or V (part 1) warp-specialized,
  /// of both otherwise.
  Value fillBarrier(OpBuilder &b, Location loc, Value stage, int64_t part) const {
    int64_t first = qBarriers() + (specialized ? part * shape.stages : 0);
    return arith::AddIOp::create(b, loc, stage, index(b, loc, first));
  }
  static Value parityOf(OpBuilder &b, Location loc, Value round) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(),
                                      arith::AndIOp::create(b, loc, round, index(b, loc, 1)));
  }

  /// The 1024-aligned base of the layout in dynamic shared memory (a
  /// shared-window address), plus `offset`.
  Value base(OpBuilder &b, Location loc, int64_t offset) const {
    auto space = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
    auto bytes = MemRefType::get({ShapedType::kDynamic}, b.getI8Type(),
                                 MemRefLayoutAttrInterface{}, space);
    Value shared = gpu::DynamicSharedMemoryOp::create(b, loc, bytes);
    Value p = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, shared);
    Value up = arith::AddIOp::create(b, loc, p, index(b, loc, kAtomBytes - 1));
    Value aligned = arith::AndIOp::create(b, loc, up, index(b, loc, ~(kAtomBytes - 1)));
    return offset ? Value(arith::AddIOp::create(b, loc, aligned, index(b, loc, offset))) : aligned;
  }
  Value slotBase(OpBuilder &b, Location loc, int64_t offset, int64_t bytes, Value stage) const {
    return arith::AddIOp::create(b, loc, base(b, loc, offset),
                                 arith::MulIOp::create(b, loc, stage, index(b, loc, bytes)));
  }
  Value barrier(OpBuilder &b, Location loc, Value which) const {
    return arith::AddIOp::create(b, loc, base(b, loc, barrierOffset()),
                                 arith::MulIOp::create(b, loc, which, index(b, loc, 8)));
  }
  static Value sharedPtr(OpBuilder &b, Location loc, Value address) {
    Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), address);
    return LLVM::IntToPtrOp::create(b, loc, LLVM::LLVMPointerType::get(b.getContext(), 3), i64);
  }
  static scf::IfOp ifLeader(OpBuilder &b, Location loc) {
    Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, threadId(b, loc),
                                        index(b, loc, 0));
    return scf::IfOp::create(b, loc, first, /*withElseRegion=*/false);
  }
  static void expectBytes(OpBuilder &b, Location loc, Value bar, int64_t bytes) {
    expectBytes(b, loc, bar, i32(b, loc, bytes));
  }
  static void expectBytes(OpBuilder &b, Location loc, Value bar, Value bytes) {
    NVVM::MBarrierArriveExpectTxOp::create(b, loc, Type(), bar, bytes, NVVM::MemScopeKindAttr(),
                                           BoolAttr(), Value());
  }
  static void wait(OpBuilder &b, Location loc, Value bar, Value parity) {
    NVVM::MBarrierTryWaitParityOp::create(b, loc, bar, parity, i32(b, loc, 10000000));
  }
  /// tileByTMA through `tensor`'s map (its kernel argument's, prepareKernel):
  /// a packed view's rows are rows start + row0 of the whole tensor, whose
  /// batch dim is 1 (docs/decode.md).
  void tma(OpBuilder &b, Location loc, Value tensor, Value dst, Value bar, int64_t rows,
           int64_t width, Layout layout, Value batch, Value head, Value row0,
           int64_t boxStride = 0) const {
    auto [base, start] = rowsView(tensor);
    Value map = tensorMaps.lookup(base);
    if (start) {
      batch = index(b, loc, 0);
      row0 = arith::AddIOp::create(b, loc, start, row0);
    }
    tileByTMA(b, loc, map, dst, bar, rows, width, layout, batch, head, row0, boxStride);
  }
  /// A packed sequence's view of `tensor` (attn-to-tile's rowsFrom: a
  /// reinterpret_cast whose offset is the tensor's plus start x its row
  /// stride): the tensor and start. Other values: themselves and null; a
  /// cast of another form: null and null.
  static std::pair<Value, Value> rowsView(Value tensor) {
    auto cast = tensor.getDefiningOp<memref::ReinterpretCastOp>();
    if (!cast)
      return {tensor, Value()};
    auto offsets = cast.getOffsets();
    auto add = offsets.size() == 1 ? offsets[0].getDefiningOp<arith::AddIOp>() : arith::AddIOp();
    auto meta = add ? add.getLhs().getDefiningOp<memref::ExtractStridedMetadataOp>()
                    : memref::ExtractStridedMetadataOp();
    auto mul = add ? add.getRhs().getDefiningOp<arith::MulIOp>() : arith::MulIOp();
    if (!meta || !mul || meta.getSource() != cast.getSource() ||
        add.getLhs() != meta.getOffset())
      return {Value(), Value()};
    // (start x a stride of the tensor: one of its metadata's, or a constant.)
    Value stride = mul.getRhs();
    if (!(stride.getDefiningOp() == meta.getOperation() ||
          stride.getDefiningOp<arith::ConstantIndexOp>()) ||
        mul.getLhs().getDefiningOp() == meta.getOperation())
      return {Value(), Value()};
    return {cast.getSource(), mul.getLhs()};
  }
  /// Whether a staged tile's rows past `seq` are zeros as TMA reads them:
  /// `seq` is a kernel tensor's extent (TMA fills past it with zeros). A
  /// ragged entry's length is not: its rows are the padding of a cache or
  /// the next entry's (copyKV and readStaged clear them).
  /// (An entry without queries reads no keys: `select(past, 0, extent)`,
  /// a call with q_lens only, counts as the extent.)
  static bool zeroFilled(Value seq) {
    if (auto select = seq.getDefiningOp<arith::SelectOp>()) {
      if (isConstantIntValue(select.getTrueValue(), 0))
        return zeroFilled(select.getFalseValue());
      if (isConstantIntValue(select.getFalseValue(), 0))
        return zeroFilled(select.getTrueValue());
      return false;
    }
    auto dim = seq.getDefiningOp<memref::DimOp>();
    return dim && isa<BlockArgument>(dim.getSource());
  }
  /// The rows of a tile at kv0 inside a sequence of `seq` (at least 0).
  static Value keptRows(OpBuilder &b, Location loc, Value kv0, Value seq) {
    return arith::SubIOp::create(b, loc, arith::MaxUIOp::create(b, loc, seq, kv0), kv0);
  }
  /// The tile at kv0's rows inside a sequence of `seq`, and an scf.if on
  /// whether the tile ends past it (fewer rows than the tile's keys): where
  /// copyKV and readStaged clear the rest.
  std::pair<Value, scf::IfOp> ifEndsPastEntry(OpBuilder &b, Location loc, Value kv0, Value seq,
                                              bool withElse) const {
    Value kept = keptRows(b, loc, kv0, seq);
    auto ends = scf::IfOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, kept, index(b, loc, shape.keys)),
        withElse);
    return {kept, ends};
  }
  /// Rows [from, keys) of the slot tensor at `slot` (`width` columns: one
  /// box of `keys` 128-byte rows per 64 columns) set to zero, 16 bytes a
  /// store, by `threads` threads (this one: `tid`). The 128B swizzle moves
  /// 16-byte chunks within their row only: a row is its 128 bytes.
  void clearRows(OpBuilder &b, Location loc, Value slot, int64_t width, Value from, Value tid,
                 int64_t threads) const {
    int64_t perRow = kRowBytes / 16;
    auto zeros = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(VectorType::get({4}, b.getI32Type()), b.getI32IntegerAttr(0)));
    Value first = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, from, index(b, loc, perRow)), tid);
    for (int64_t c = 0; c < width / kBoxCols; ++c) {
      Value box = arith::AddIOp::create(b, loc, slot, index(b, loc, c * shape.keys * kRowBytes));
      auto loop = scf::ForOp::create(b, loc, first, index(b, loc, shape.keys * perRow),
                                     index(b, loc, threads));
      OpBuilder in = OpBuilder::atBlockTerminator(loop.getBody());
      Value at = arith::AddIOp::create(
          in, loc, box, arith::MulIOp::create(in, loc, loop.getInductionVar(), index(in, loc, 16)));
      LLVM::StoreOp::create(in, loc, zeros, sharedPtr(in, loc, at), /*alignment=*/16);
    }
  }
  static void fenceAsync(OpBuilder &b, Location loc) {
    NVVM::FenceProxyOp::create(
        b, loc, NVVM::ProxyKind::async_shared,
        NVVM::SharedSpaceAttr::get(b.getContext(), NVVM::SharedSpace::shared_cta));
  }
  /// Rows [row0, row0 + rows) x `width` columns of (batch, head) into `dst`,
  /// one TMA box of 64 columns after another (`rows` x 128 bytes each;
  /// `boxStride` bytes apart, 0: back to back).
  /// The tensor map's dims are the tensor's, innermost first.
  static void tileByTMA(OpBuilder &b, Location loc, Value map, Value dst, Value bar, int64_t rows,
                        int64_t width, Layout layout, Value batch, Value head, Value row0,
                        int64_t boxStride = 0) {
    if (!boxStride)
      boxStride = rows * kRowBytes;
    auto cluster = LLVM::LLVMPointerType::get(b.getContext(), 7);
    for (int64_t c = 0; c < width / kBoxCols; ++c) {
      Value to = LLVM::AddrSpaceCastOp::create(
          b, loc, cluster,
          sharedPtr(b, loc,
                    arith::AddIOp::create(b, loc, dst, index(b, loc, c * boxStride))));
      SmallVector<Value> coords;
      for (Value x : llvm::reverse(at(layout, batch, head, row0, index(b, loc, c * kBoxCols))))
        coords.push_back(arith::IndexCastOp::create(b, loc, b.getI32Type(), x));
      NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(
          b, loc, to, map, coords, bar, ValueRange{}, Value(), Value(),
          NVVM::TMALoadMode::TILE, /*isCTAOnly=*/false, NVVM::CTAGroupKindAttr(), Value());
    }
  }
  /// A wgmma descriptor (PTX ISA, "Matrix Descriptor Format") of the
  /// 128B-swizzled tile at shared address `address`.
  static Value descriptor(OpBuilder &b, Location loc, Value address, int64_t leading,
                          int64_t stride) {
    Value a = arith::IndexCastOp::create(b, loc, b.getI64Type(), address);
    a = arith::ShRUIOp::create(
        b, loc, arith::AndIOp::create(b, loc, a, arith::ConstantIntOp::create(b, loc, 0x3FFFF, 64)),
        arith::ConstantIntOp::create(b, loc, 4, 64));
    int64_t fixed = ((leading >> 4) << 16) | ((stride >> 4) << 32) | (int64_t(1) << 62);
    return arith::OrIOp::create(b, loc, a, arith::ConstantIntOp::create(b, loc, fixed, 64));
  }
  /// `desc` with its start address `bytes` further.
  static Value advance(OpBuilder &b, Location loc, Value desc, int64_t bytes) {
    if (!bytes)
      return desc;
    return arith::AddIOp::create(b, loc, desc, arith::ConstantIntOp::create(b, loc, bytes >> 4, 64));
  }
  static LLVM::LLVMStructType accumulatorStruct(MLIRContext *ctx, int64_t n) {
    return LLVM::LLVMStructType::getLiteral(ctx, SmallVector<Type>(n / 2, Float32Type::get(ctx)));
  }
  NVVM::WGMMATypes inputType() const {
    return shape.elt.isF16() ? NVVM::WGMMATypes::f16 : NVVM::WGMMATypes::bf16;
  }
  /// acc (+)= A B^T, both K-major in shared memory, m64nNk16.
  Value wgmma(OpBuilder &b, Location loc, Value acc, Value a, Value bDesc, int64_t n,
              bool accumulate) const {
    MLIRContext *ctx = b.getContext();
    auto in = NVVM::WGMMATypesAttr::get(ctx, inputType());
    auto one = NVVM::WGMMAScaleInAttr::get(ctx, NVVM::WGMMAScaleIn::one);
    return NVVM::WgmmaMmaAsyncOp::create(
        b, loc, acc.getType(), acc, a, bDesc, NVVM::MMAShapeAttr::get(ctx, 64, n, 16), in, in,
        NVVM::WGMMATypesAttr::get(ctx, NVVM::WGMMATypes::f32),
        NVVM::WGMMAScaleOutAttr::get(ctx, accumulate ? NVVM::WGMMAScaleOut::one
                                                      : NVVM::WGMMAScaleOut::zero),
        one, one,
        NVVM::MMALayoutAttr::get(ctx, NVVM::MMALayout::row),
        NVVM::MMALayoutAttr::get(ctx, NVVM::MMALayout::col), NVVM::MMAIntOverflowAttr());
  }
  /// The accumulator struct as m16n8 fragments (4 f32 per 8 columns).
  SmallVector<Value> unpack(OpBuilder &b, Location loc, Value acc, int64_t n) const {
    SmallVector<Value> frags;
    for (int64_t t = 0; t < n / 8; ++t) {
      SmallVector<Value> e;
      for (int64_t i = 0; i < 4; ++i)
        e.push_back(LLVM::ExtractValueOp::create(b, loc, acc, ArrayRef<int64_t>{t * 4 + i}));
      frags.push_back(vector::FromElementsOp::create(b, loc, cType(b.getContext()), e));
    }
    return frags;
  }
  /// The f32 elements of m16n8 accumulator fragments (vector<2x2xf32>), in
  /// the order of the accumulator struct (unpack's inverse).
  static SmallVector<Value> elementsOf(OpBuilder &b, Location loc, ArrayRef<Value> fragments) {
    SmallVector<Value> elements;
    for (Value frag : fragments)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 2; ++j)
          elements.push_back(vector::ExtractOp::create(b, loc, frag, ArrayRef<int64_t>{i, j}));
    return elements;
  }
  /// Pairs of 16-bit elements as the i32 registers wgmma's A takes.
  SmallVector<Value> packPairs(OpBuilder &b, Location loc, ArrayRef<Value> halves) const {
    auto pair = VectorType::get({2}, shape.elt);
    auto word = VectorType::get({1}, b.getI32Type());
    SmallVector<Value> regs;
    for (size_t r = 0; r + 1 < halves.size(); r += 2) {
      Value v = vector::FromElementsOp::create(b, loc, pair, halves.slice(r, 2));
      regs.push_back(vector::ExtractOp::create(b, loc, vector::BitCastOp::create(b, loc, word, v),
                                               ArrayRef<int64_t>{0}));
    }
    return regs;
  }
  /// d += A B for each 16 keys, A in registers (4 x b32 per step), B = V by
  /// descriptor, MN-major (imm-trans-b 1): one asm statement holding the
  /// fence and every step, so that all its register inputs are written
  /// before the fence (written between two steps, ptxas would fence again);
  /// the accumulators tied in and out.
  Value wgmmaRS(OpBuilder &b, Location loc, ArrayRef<Value> d, ArrayRef<Value> a,
                ArrayRef<Value> descs) const {
    int64_t n = int64_t(d.size()), steps = int64_t(descs.size());
    auto reg = [](int64_t i) { return "$" + std::to_string(i); };
    std::string type = shape.elt.isF16() ? "f16" : "bf16";
    std::string accumulators, constraints;
    for (int64_t i = 0; i < n; ++i) {
      accumulators += (i ? ", " : "") + reg(i);
      constraints += i ? ",=f" : "=f";
    }
    // Operands after the outputs: the A registers, the descriptors, the
    // scale-d register (1: accumulate), then the tied accumulators.
    int64_t scale = n + 5 * steps;
    std::string ptx = "{\n.reg .pred p;\nsetp.ne.b32 p, " + reg(scale) +
                      ", 0;\nwgmma.fence.sync.aligned;\n";
    for (int64_t t = 0; t < steps; ++t) {
      int64_t r = n + 4 * t;
      ptx += "wgmma.mma_async.sync.aligned.m64n" + std::to_string(2 * n) + "k16.f32." + type +
             "." + type + " {" + accumulators + "}, {" + reg(r) + ", " + reg(r + 1) + ", " +
             reg(r + 2) + ", " + reg(r + 3) + "}, " + reg(n + 4 * steps + t) + ", p, 1, 1, 1;\n";
    }
    ptx += "}";
    SmallVector<Value> operands(a.begin(), a.end());
    llvm::append_range(operands, descs);
    operands.push_back(i32(b, loc, 1));
    for (int64_t i = 0; i < 4 * steps; ++i)
      constraints += ",r";
    for (int64_t t = 0; t < steps; ++t)
      constraints += ",l";
    constraints += ",r";
    for (int64_t i = 0; i < n; ++i) {
      constraints += "," + std::to_string(i);
      operands.push_back(d[i]);
    }
    return inlineAsm(b, loc, accumulatorStruct(b.getContext(), 2 * n), operands, ptx,
                     constraints);
  }
  static Value inlineAsm(OpBuilder &b, Location loc, Type result, ValueRange operands,
                         StringRef ptx, StringRef constraints) {
    return LLVM::InlineAsmOp::create(
               b, loc, result, operands, ptx, constraints, /*has_side_effects=*/true,
               /*is_align_stack=*/false, LLVM::tailcallkind::TailCallKind::None,
               LLVM::AsmDialectAttr::get(b.getContext(), LLVM::AsmDialect::AD_ATT), ArrayAttr())
        .getResult(0);
  }
  /// The accumulator struct through an empty asm statement with side effects
  /// (each register tied in and out), after wgmma.wait_group: the wgmma
  /// writes them asynchronously, and nothing else keeps LLVM from moving
  /// their first reads above the wait.
  static Value pinAfterWait(OpBuilder &b, Location loc, Value acc) {
    auto type = cast<LLVM::LLVMStructType>(acc.getType());
    SmallVector<Value> values;
    for (int64_t i = 0; i < int64_t(type.getBody().size()); ++i)
      values.push_back(LLVM::ExtractValueOp::create(b, loc, acc, ArrayRef<int64_t>{i}));
    return pinned(b, loc, type, values);
  }
  /// `values` (f32) through an empty asm statement with side effects, each
  /// tied in and out: the struct `type` of them.
  static Value pinned(OpBuilder &b, Location loc, Type type, ArrayRef<Value> values) {
    int64_t n = int64_t(values.size());
    std::string constraints;
    for (int64_t i = 0; i < n; ++i)
      constraints += i ? ",=f" : "=f";
    for (int64_t i = 0; i < n; ++i)
      constraints += "," + std::to_string(i);
    return inlineAsm(b, loc, type, values, "", constraints);
  }
};

/// The tensor maps as parameters, the barriers initialized at the kernel's
/// entry, and the copies out of their EMPTY guards (see the file comment).
LogicalResult HopperTarget::prepareKernel(gpu::GPUFuncOp kernel) {
  MLIRContext *ctx = kernel.getContext();
  SmallVector<heed::attn::TileWarpSpecializeOp> specializations;
  kernel.walk([&](heed::attn::TileWarpSpecializeOp op) { specializations.push_back(op); });
  if (specializations.size() > 1)
    return specializations[1].emitOpError()
           << "--convert-attn-tile-to-hopper: one warp-specialized work item per kernel";
  // The maps: the operand tiles' (by part: Q; the backward's K and V, or Q
  // and dO), then the slots' two tensors.
  SmallVector<Value> tensors(operandParts());
  WalkResult operands = kernel.walk([&](heed::attn::TileLoadOp load) {
    if (cast<heed::attn::TileType>(load.getResult().getType()).getRole() !=
        heed::attn::TileRole::Q)
      return WalkResult::advance();
    int64_t part = shape.backward ? load.getPart() : 0;
    if (part >= operandParts() || (tensors[part] && tensors[part] != load.getTensor())) {
      load.emitOpError() << "--convert-attn-tile-to-hopper: one tensor per operand tile";
      return WalkResult::interrupt();
    }
    tensors[part] = load.getTensor();
    return WalkResult::advance();
  });
  if (operands.wasInterrupted())
    return failure();
  if (llvm::is_contained(tensors, Value()))
    return kernel.emitOpError() << "--convert-attn-tile-to-hopper: an operand tile is missing";
  SmallVector<heed::attn::TileCopyKVOp> copies;
  kernel.walk([&](heed::attn::TileCopyKVOp copy) { copies.push_back(copy); });
  pagedRows = shape.keys;
  if (!copies.empty()) {
    heed::attn::TileCopyKVOp copy = copies.front();
    // (One map per tensor: every copy of the kernel reads the same two.)
    for (heed::attn::TileCopyKVOp other : copies)
      if (rowsView(other.getKey()).first != rowsView(copy.getKey()).first ||
          rowsView(other.getValue()).first != rowsView(copy.getValue()).first ||
          other.getPageTable() != copy.getPageTable())
        return other.emitOpError()
               << "--convert-attn-tile-to-hopper: every K/V copy of a kernel reads the same "
                  "tensors (one tensor map each)";
    tensors.push_back(copy.getKey());
    tensors.push_back(copy.getValue());
    if (copy.getPageTable()) {
      // A box per page, or per tile where pages hold whole tiles; a box of
      // at least 8 rows, so that each keeps the 128B swizzle's period.
      int64_t pageSize = heed::pageSizeOf(copy.getKey(), copy.getLayout());
      pagedRows = std::min(shape.keys, pageSize);
      if (pagedRows % 8 || pageSize % pagedRows || shape.keys % pagedRows)
        return copy.emitOpError()
               << "--convert-attn-tile-to-hopper: the wgmma kernel reads a paged cache a TMA "
                  "box per page, which takes pages of a multiple of 8 keys that divide its "
                  "key tile ("
               << shape.keys << " keys) or are multiples of it, not " << pageSize
               << "; the tensor-core kernel takes any page size";
    }
  }
  SmallVector<int64_t> described; // (kernel argument, box rows) per map
  auto ptr = LLVM::LLVMPointerType::get(ctx);
  for (auto [i, view] : llvm::enumerate(tensors)) {
    // (A packed sequence's view: its whole tensor's map.)
    Value t = rowsView(view).first;
    if (!t)
      return view.getDefiningOp()->emitOpError()
             << "--convert-attn-tile-to-hopper: a view TMA cannot read (only a packed "
                "sequence's rows from its entry's first)";
    if (tensorMaps.count(t))
      continue;
    unsigned at = kernel.getNumArguments();
    if (failed(kernel.insertArgument(at, ptr, DictionaryAttr::get(ctx), kernel.getLoc())))
      continue;
    tensorMaps[t] = kernel.getArgument(at);
    auto arg = dyn_cast<BlockArgument>(t);
    described.push_back(arg ? int64_t(arg.getArgNumber()) : -1);
    // (An operand tile: a warpgroup's rows.)
    described.push_back(int64_t(i) < operandParts() ? 64 : pagedRows);
  }
  kernel->setAttr(kTensorMapsAttr, DenseI64ArrayAttr::get(ctx, described));
  if (!specializations.empty()) {
    // The producer copies exactly the tiles the consumers compute and
    // counts them: its copies stay in their guards.
    if (failed(lowerWarpSpecialize(specializations.front())))
      return failure();
  } else {
    for (heed::attn::TileCopyKVOp copy : copies) {
      auto guard = dyn_cast<scf::IfOp>(copy->getParentOp());
      auto test = guard ? guard.getCondition().getDefiningOp<arith::CmpIOp>() : arith::CmpIOp();
      if (test && test.getLhs().getDefiningOp<heed::attn::TileClassifyOp>())
        copy->moveBefore(guard);
    }
    restartNestedKeyLoops(kernel);
  }
  OpBuilder b(ctx);
  b.setInsertionPointToStart(&kernel.getBody().front());
  Location loc = kernel.getLoc();
  {
    auto leader = ifLeader(b, loc);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&leader.getThenRegion().front());
    for (int64_t i = 0; i < enteredBarriers(); ++i) {
      // A release barrier counts every consumer thread; the others one
      // arrival (the thread that posts the TMA's bytes).
      int64_t count = specialized && i >= qBarriers() + 2 * shape.stages ? consumerThreads() : 1;
      NVVM::MBarrierInitOp::create(b, loc, sharedPtr(b, loc, barrier(b, loc, index(b, loc, i))),
                                   i32(b, loc, count), Value());
    }
    // The initialized barriers are visible to the TMA unit (the async proxy).
    fenceAsync(b, loc);
  }
  gpu::BarrierOp::create(b, loc);
  return success();
}

/// waitKV counts a slot's fills from its key loop's first tile, its
/// barrier's phases count from the kernel's start: the same where the key
/// loop runs once per block. A key loop inside another loop (the backward's
/// dK/dV kernel walks the query heads of a GQA group, a key loop each)
/// starts each run with its slots' barriers made anew: after every thread
/// has waited for the last fill of the run before (a block barrier), thread
/// 0 invalidates and initializes them, and a second block barrier keeps
/// every wait after that.
void HopperTarget::restartNestedKeyLoops(gpu::GPUFuncOp kernel) {
  llvm::SetVector<scf::ForOp> loops;
  kernel.walk([&](heed::attn::TileWaitKVOp wait) {
    if (auto loop = wait->getParentOfType<scf::ForOp>())
      loops.insert(loop);
  });
  for (scf::ForOp loop : loops) {
    auto outer = loop->getParentOfType<scf::ForOp>();
    if (!outer || !kernel->isProperAncestor(outer))
      continue;
    // Before the loop's prologue (the copies ahead of it in its block).
    Operation *at = loop;
    for (Operation *p = loop->getPrevNode(); p; p = p->getPrevNode())
      if (p->walk([](heed::attn::TileCopyKVOp) { return WalkResult::interrupt(); })
              .wasInterrupted())
        at = p;
    OpBuilder b(at);
    Location loc = loop.getLoc();
    gpu::BarrierOp::create(b, loc);
    {
      auto leader = ifLeader(b, loc);
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(&leader.getThenRegion().front());
      for (int64_t s = 0; s < shape.stages; ++s) {
        Value bar = sharedPtr(b, loc, barrier(b, loc, index(b, loc, qBarriers() + s)));
        NVVM::MBarrierInvalOp::create(b, loc, bar);
        NVVM::MBarrierInitOp::create(b, loc, bar, i32(b, loc, 1), Value());
      }
      fenceAsync(b, loc);
    }
    gpu::BarrierOp::create(b, loc);
  }
}

/// The consumer warpgroups (threads 0 .. consumers x 128 - 1, so that the
/// fragment layouts' thread ids stay as they are) run the consumer region
/// after raising their register budget; the producer warpgroup (the last)
/// lowers its budget and one of its threads runs the producer region. No
/// barrier of the whole block may follow: the producer's other threads have
/// left, so the consumer region must hold no attn.tile.barrier. The kernel
/// is marked with its block size (.maxntid), from which ptxas gives each
/// thread 65536 / threads registers at launch, the pool setmaxnreg shares
/// out: 128 x (producer + consumers x consumer budget) must fit in it.
LogicalResult HopperTarget::lowerWarpSpecialize(heed::attn::TileWarpSpecializeOp op) {
  int64_t producer = op.getProducerRegisters(), consumer = op.getConsumerRegisters();
  int64_t threads = consumerThreads() + kWarpgroup;
  int64_t consumers = consumerThreads() / kWarpgroup;
  auto valid = [](int64_t r) { return r == 0 || (r >= 24 && r <= 256 && r % 8 == 0); };
  if (!valid(producer) || !valid(consumer))
    return op.emitOpError() << "--convert-attn-tile-to-hopper: register budgets are multiples "
                               "of 8 in [24, 256] (or 0: unchanged), not "
                            << producer << " and " << consumer;
  int64_t atLaunch = heed::hopperRegistersAtLaunch(threads);
  int64_t pool = atLaunch * threads;
  int64_t asked = kWarpgroup * ((producer ? producer : atLaunch) +
                                consumers * (consumer ? consumer : atLaunch));
  if (asked > pool || (producer && producer > atLaunch) || (consumer && consumer < atLaunch))
    return op.emitOpError() << "--convert-attn-tile-to-hopper: a producer at " << producer
                            << " and " << consumers << " consumer warpgroups at " << consumer
                            << " registers per thread do not fit the " << atLaunch
                            << " per thread a block of " << threads
                            << " threads has at launch (the producer lowers its budget, the "
                               "consumers raise theirs, within 65536 per block)";
  WalkResult barrier = op.getConsumer().walk([&](heed::attn::TileBarrierOp inner) {
    inner.emitOpError() << "is a barrier of the whole block in warp-specialized code: the "
                           "producer warpgroup does not take part";
    return WalkResult::interrupt();
  });
  if (barrier.wasInterrupted())
    return failure();
  if (op.getPingpong() && consumers > 1 && shape.stages < 2)
    return op.emitOpError() << "--convert-attn-tile-to-hopper: ping-pong needs two staging "
                               "slots or more (with one, a warpgroup would wait for the next "
                               "fill while holding its turn, and that fill for the other's "
                               "release after its turn)";
  specialized = true;
  pingpong = op.getPingpong() && consumers > 1;
  MLIRContext *ctx = op.getContext();
  Location loc = op.getLoc();
  OpBuilder b(op);
  auto kernel = op->getParentOfType<gpu::GPUFuncOp>();
  kernel->setAttr(NVVM::NVVMDialect::getMaxntidAttrName(),
                  DenseI32ArrayAttr::get(ctx, {int32_t(threads), 1, 1}));
  // One block per multiprocessor: ptxas gives the kernel 65536 / threads
  // registers at entry (without it setmaxnreg is ignored: "unable to
  // determine register count at entry").
  kernel->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(), b.getI32IntegerAttr(1));
  Value tid = threadId(b, loc);
  Value first = index(b, loc, consumerThreads()); // the producer's first thread
  auto role = scf::IfOp::create(
      b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, tid, first),
      /*withElseRegion=*/true);
  auto budget = [&](OpBuilder &at, int64_t registers, NVVM::SetMaxRegisterAction action) {
    if (registers)
      NVVM::SetMaxRegisterOp::create(at, loc, at.getI32IntegerAttr(int32_t(registers)),
                                     NVVM::SetMaxRegisterActionAttr::get(ctx, action));
  };
  Block *consumerBlock = &role.getThenRegion().front();
  OpBuilder cb = OpBuilder::atBlockTerminator(consumerBlock);
  budget(cb, consumer, NVVM::SetMaxRegisterAction::increase);
  auto ifGroup = [&](arith::CmpIPredicate pred, int64_t group) {
    auto branch = scf::IfOp::create(
        cb, loc, arith::CmpIOp::create(cb, loc, pred, warpgroup(cb, loc), index(cb, loc, group)),
        /*withElseRegion=*/false);
    return OpBuilder::atBlockTerminator(&branch.getThenRegion().front());
  };
  // The key loop the turns bracket (the loop of the Q K^T products): taken
  // before it, passed after its last P V (the overlap's tail P V after it,
  // if any), so that neither the epilogue nor a persistent worker's next Q
  // holds the turn. Without one found, the whole consumer region.
  scf::ForOp keyLoop;
  if (pingpong) {
    bool one = true;
    op.getConsumer().walk([&](heed::attn::TileQKOp qk) {
      auto loop = qk->getParentOfType<scf::ForOp>();
      one = one && loop && (!keyLoop || keyLoop == loop);
      keyLoop = loop;
    });
    if (!one)
      keyLoop = {};
  }
  if (pingpong) {
    // Warpgroup 0 has the first turn; every warpgroup takes its turn
    // before its first Q K^T.
    OpBuilder first = ifGroup(arith::CmpIPredicate::eq, 0);
    NVVM::BarrierArriveOp::create(first, loc, i32(first, loc, 1), i32(first, loc, 2 * kWarpgroup));
    if (!keyLoop)
      takeTurn(cb, loc);
  }
  consumerBlock->getOperations().splice(consumerBlock->getTerminator()->getIterator(),
                                        op.getConsumer().front().getOperations());
  if (pingpong && !keyLoop) {
    // After the last P V, the next warpgroup's last turn (the last
    // warpgroup's next would be warpgroup 0, which is done).
    OpBuilder last = ifGroup(arith::CmpIPredicate::ult, consumers - 1);
    passTurn(last, loc);
  }
  if (keyLoop) {
    OpBuilder before(keyLoop);
    takeTurn(before, loc);
    Operation *lastPV = keyLoop;
    if (Operation *next = keyLoop->getNextNode();
        next && next->walk([](heed::attn::TilePVOp) { return WalkResult::interrupt(); })
                    .wasInterrupted())
      lastPV = next;
    OpBuilder after(lastPV->getBlock(), std::next(lastPV->getIterator()));
    // Passed but by the last warpgroup at its last item (warpgroup 0, next,
    // takes no more turns): a persistent worker's item loop has a next item.
    Value pass = arith::CmpIOp::create(after, loc, arith::CmpIPredicate::ult, warpgroup(after, loc),
                                       index(after, loc, consumers - 1));
    for (Operation *p = keyLoop->getParentOp(); p && p != role.getOperation(); p = p->getParentOp())
      if (auto items = dyn_cast<scf::ForOp>(p);
          items && isa<heed::attn::TileWorkItemOp>(items.getBody()->front())) {
        Value next = arith::AddIOp::create(after, loc, items.getInductionVar(), items.getStep());
        pass = arith::OrIOp::create(
            after, loc, pass,
            arith::CmpIOp::create(after, loc, arith::CmpIPredicate::ult, next,
                                  items.getUpperBound()));
        break;
      }
    auto branch = scf::IfOp::create(after, loc, pass, /*withElseRegion=*/false);
    OpBuilder in = OpBuilder::atBlockTerminator(&branch.getThenRegion().front());
    passTurn(in, loc);
  }
  OpBuilder pb = OpBuilder::atBlockTerminator(&role.getElseRegion().front());
  budget(pb, producer, NVVM::SetMaxRegisterAction::decrease);
  auto one = scf::IfOp::create(pb, loc,
                               arith::CmpIOp::create(pb, loc, arith::CmpIPredicate::eq, tid, first),
                               /*withElseRegion=*/false);
  Block *producerBlock = &one.getThenRegion().front();
  producerBlock->getOperations().splice(producerBlock->getTerminator()->getIterator(),
                                        op.getProducer().front().getOperations());
  op.erase();
  return success();
}

struct ConvertAttnTileToHopperPass
    : heed::impl::ConvertAttnTileToHopperBase<ConvertAttnTileToHopperPass> {
  using ConvertAttnTileToHopperBase::ConvertAttnTileToHopperBase;
  void runOnOperation() override {
    auto make = [&](const KernelShape &shape) {
      auto target = std::make_unique<HopperTarget>(shape);
      target->wideStores = wideStores;
      return std::unique_ptr<MatrixCoreTarget>(std::move(target));
    };
    // A slot's barrier counts its phases from the kernel's start, the waits
    // from their loop's first tile: one pipelined key loop per kernel.
    // (Warp-specialized waits name their fill: --attn-overlap-softmax's
    // last P V waits after the loop.)
    llvm::DenseMap<Operation *, Operation *> loopOf; // function -> its key loop
    WalkResult walk = getOperation().walk([&](heed::attn::TileWaitKVOp wait) {
      if (wait.getStage())
        return WalkResult::advance();
      auto loop = wait->getParentOfType<scf::ForOp>();
      Operation *func = wait->getParentOfType<FunctionOpInterface>();
      auto [it, inserted] = loopOf.try_emplace(func, loop);
      if (loop && (inserted || it->second == loop))
        return WalkResult::advance();
      wait.emitOpError() << "--convert-attn-tile-to-hopper: the wgmma kernel takes one "
                            "pipelined key loop per kernel (routed variants are not lowered "
                            "to it yet); use the tensor-core kernel";
      return WalkResult::interrupt();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    // TMA copies boxes of consecutive rows: a gated head's routed rows are a list.
    WalkResult gated = getOperation().walk([&](heed::attn::TileStoreOp store) {
      if (!store.getGate())
        return WalkResult::advance();
      store.emitOpError() << "--convert-attn-tile-to-hopper: gated variants are not lowered "
                             "to the wgmma kernel yet; use the tensor-core kernel";
      return WalkResult::interrupt();
    });
    if (gated.wasInterrupted())
      return signalPassFailure();
    if (failed(lowerMatrixCoreKernels(getOperation(), "--convert-attn-tile-to-hopper", make,
                                      WarpFragmentTarget::completeShape)))
      signalPassFailure();
  }
};

/// The last parameters of each kernel with `heed.tensor_maps` (one per
/// (argument, rows) pair) become 128-byte byval `nvvm.grid_constant` parameters: the kernel
/// addresses the CUtensorMap where the launch put it, in parameter space.
struct TensorMapParamsPass : heed::impl::HeedTensorMapParamsBase<TensorMapParamsPass> {
  void runOnOperation() override {
    getOperation().walk([&](LLVM::LLVMFuncOp func) {
      auto maps = func->getAttrOfType<DenseI64ArrayAttr>(kTensorMapsAttr);
      if (!maps)
        return;
      MLIRContext *ctx = func.getContext();
      unsigned count = unsigned(maps.size()) / 2, args = func.getNumArguments();
      if (count > args) {
        func.emitError() << "has " << count << " tensor maps but " << args << " parameters";
        return signalPassFailure();
      }
      auto map = LLVM::LLVMArrayType::get(IntegerType::get(ctx, 8), kMapBytes);
      for (unsigned i = args - count; i < args; ++i) {
        func.setArgAttr(i, LLVM::LLVMDialect::getByValAttrName(), TypeAttr::get(map));
        func.setArgAttr(i, LLVM::LLVMDialect::getAlignAttrName(),
                        IntegerAttr::get(IntegerType::get(ctx, 64), 64));
        func.setArgAttr(i, "nvvm.grid_constant", UnitAttr::get(ctx));
      }
    });
  }
};

} // namespace

int64_t heed::hopperRegistersAtLaunch(int64_t threads) {
  return std::min<int64_t>(255, 65536 / threads) / 8 * 8;
}

std::pair<int64_t, int64_t> heed::hopperRegisterBudget(int64_t consumers, int64_t producer) {
  constexpr int64_t kMost = 240;
  int64_t threads = (consumers + 1) * kWarpgroup;
  int64_t atLaunch = hopperRegistersAtLaunch(threads);
  int64_t consumer =
      std::min<int64_t>(kMost, (atLaunch * (consumers + 1) - producer) / consumers / 8 * 8);
  if (consumer <= atLaunch || producer >= atLaunch)
    return {0, 0};
  return {producer, consumer};
}
