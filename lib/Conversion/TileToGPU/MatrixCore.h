// The GPU lowering of the tile ops (lib/Conversion/TileToGPU): what every
// GPU target shares, and the target interface of the matrix-core ones.
//
// A GPU kernel runs one work item per thread block. On matrix cores a block
// of `waves` waves owns the query tile's rows (`rowsPerWave` per wave); each
// lane holds accumulator elements of `rowSlots` distinct rows. The tiles
// become per-lane values, 1:N:
//   q   -> the lane's operand fragments of Q (loaded once per item)
//   k/v -> (slot, part): the staging slot holding the tile (workgroup
//          memory) and which of its two tensors (0: D wide, 1: Dv wide)
//   s   -> the lane's accumulator fragments of S = Q K^T
//   acc -> the lane's accumulator fragments of O
//   row -> one f32 per row slot (max: the row's value; sum: this lane's part)
//   col -> one f32 per distinct column of the lane's accumulator elements
//          (a transposed score tile's per-query lse or delta)
//   span -> (first, end): flat tiles (first token, sequence length); a
//           gated head's tile (list slot of its first row, slot past its
//           last), the tokens read from the routed-row list (QueryRows)
// What differs per target (fragment layouts, staging, the matrix
// instruction, lane reductions) is a MatrixCoreTarget, as Triton's
// TargetInfo splits its lowerings: NVIDIA (TileToNVGPU: mma.sync, ldmatrix,
// cp.async) and AMD (TileToAMDGPU: MFMA, LDS).
#ifndef HEED_LIB_CONVERSION_TILETOGPU_MATRIXCORE_H
#define HEED_LIB_CONVERSION_TILETOGPU_MATRIXCORE_H

#include "../TileCommon/VariantRegions.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Transforms/DialectConversion.h"

#include <memory>

namespace heed::gpu_tile {

using mlir::Location;
using mlir::OpBuilder;
using mlir::Value;

/// The block and tile geometry of one kernel.
struct KernelShape {
  int64_t waveSize = 32;    ///< lanes per wave (warp)
  int64_t waves = 4;        ///< waves per block
  int64_t rowsPerWave = 16; ///< query rows a wave owns
  int64_t keys = 64;        ///< keys per key tile
  int64_t stages = 1;       ///< K/V staging slots (attn.tile.copy_kv's `stages`)
  unsigned rowSlots = 1;    ///< distinct query rows a lane holds
  int64_t headDim = 0, valueDim = 0; ///< widths of a slot's parts 0 and 1
  mlir::Type elt;           ///< f16 or bf16
  bool backward = false;    ///< a kernel of the backward (attn.tile.probs)
  bool keyMajor = false;    ///< the backward's dK/dV kernel (transposed probs)
  int64_t blockRows() const { return waves * rowsPerWave; }
  int64_t threads() const { return waves * waveSize; }
};

/// One accumulator element of a lane: which of its row slots it belongs to
/// and its column (the key within the tile, or the value dim).
struct Element {
  Value value;
  unsigned slot;
  Value col;
};

/// A tile's query rows: block-relative row r is real where first + r <
/// end and is token first + r, or, for a gated head's tile (`list`, the
/// head's routed-row list), token list[first + r] (`first` is then the list
/// slot of the tile's first row), or, for a packed GQA tile (`seq`, the
/// length of one head's queries: attn.tile.packed_span), virtual row v =
/// first + r of group x seq: token v % seq of the item's head + v / seq,
/// or, for a patch of a token grid (`patch`, docs/passes.md "Patch
/// tiling"), row r = lane r of the patch: token first + the lane's offset
/// (`first` is the patch's origin token), real where its grid digits lie
/// inside the grid and the token before `end`.
struct QueryRows {
  Value first, end, list;
  Value seq; ///< packed GQA tiles: one head's queries (at least 1)
  /// Patches: the grid's inner extents and the patch's sides (the span's
  /// #attn.tiling); empty for every other tile.
  llvm::SmallVector<int64_t, 2> grid;
  llvm::SmallVector<int64_t, 3> patch;
  /// Whether row r is token first + r (and real where that is before end).
  bool flat() const { return !list && !seq && patch.empty(); }
  bool patched() const { return !patch.empty(); }
  /// The rows of `span` (the op's original operand) from its converted
  /// values.
  static QueryRows of(Value span, mlir::ValueRange converted);
  /// Whether row `r` is real.
  Value contains(OpBuilder &b, Location loc, Value r) const;
  /// Row r's token; where `real` (if given) is false, the tile's first
  /// row's instead (a gated tile's list is not read past its end).
  Value token(OpBuilder &b, Location loc, Value r, Value real = {}) const;
  /// Row r's token, or the last real row's past it (padding rows evaluate
  /// the variant there).
  Value clampedToken(OpBuilder &b, Location loc, Value r) const;
  /// clampedToken as an i32 (RegionInlining::narrow), computed in 32 bits
  /// (tokens are below 2^31 and first + r below 2^32).
  Value clampedToken32(OpBuilder &b, Location loc, Value r) const;
  /// Row r's head: `head` (the work item's), or in a packed GQA tile the
  /// head of row r (clamped to the last real row's, as clampedToken).
  Value head(OpBuilder &b, Location loc, Value head, Value r) const;
  /// first + r clamped to the last real slot, computed in `type` (index,
  /// or i32: slots are below 2^31 and first + r below 2^32).
  Value clampedSlot(OpBuilder &b, Location loc, Value r, mlir::Type type) const;
  /// For a gated tile, moves `b` to where the span is defined, so that what
  /// is read from the list there is read once per work item, not per key
  /// tile (LLVM keeps loads below barriers); else leaves `b` where it is.
  void moveToSpan(OpBuilder &b) const;
};

/// A backward kernel's buffer gradients, accumulated deterministically in
/// fixed point (GradientAccumulators.cpp; docs/backward.md).
struct GradientAccumulators {
  Value workspace;                  ///< i64 words, 8 per gradient element
  Value finalize;                   ///< index: nonzero for the finalizing launch
  llvm::SmallVector<Value> buffers; ///< the kernel's gradient buffers (f32), in order
  llvm::SmallVector<Value> offsets; ///< each buffer's first word in the workspace
  /// Whether `gradient` is one of the kernel's gradient buffers.
  bool accumulates(Value gradient) const;
  /// gradient[indices] += value where `ok` holds and every index is in
  /// range (`gradient` one of `buffers`).
  void add(OpBuilder &b, Location loc, Value gradient, mlir::ValueRange indices, Value value,
           Value ok) const;
};

/// Appends a backward kernel's last two arguments (the workspace and the
/// finalize flag) and finds its gradient buffers (the derivative ops'
/// last buffers); computes their offsets at the kernel's entry.
mlir::LogicalResult prepareGradientAccumulators(mlir::gpu::GPUFuncOp kernel,
                                                GradientAccumulators &out);
/// After the kernel's lowering: a branch at its entry that, with the
/// finalize flag, turns element (block x * `threads` + thread x)'s
/// accumulator into its f32 in its gradient buffer and returns.
void addGradientFinalize(mlir::gpu::GPUFuncOp kernel, const GradientAccumulators &grads,
                         int64_t threads);

/// The target interface of the matrix-core kernels.
class MatrixCoreTarget {
public:
  explicit MatrixCoreTarget(KernelShape shape) : shape(shape) {}
  virtual ~MatrixCoreTarget() = default;

  /// Why this target cannot take the kernel ("" if it can).
  virtual std::string unsupported() const = 0;
  /// Whether its loads, copies and stores take patches of a token grid
  /// (QueryRows::patch: rows that are not consecutive tokens).
  virtual bool takesPatches() const { return false; }
  /// A Q tile is one operand fragment of this type per `second` head-dim
  /// columns; an S or O tile one accumulator fragment per `second` columns.
  virtual std::pair<mlir::VectorType, int64_t> operandFragment(mlir::MLIRContext *ctx) const = 0;
  virtual std::pair<mlir::VectorType, int64_t> accumulatorFragment(mlir::MLIRContext *ctx) const = 0;
  /// The per-lane types of a tile: its fragments, the staging slot (K, V)
  /// or one f32 per row slot (row statistics). An s tile narrowed to 16 bits
  /// (attn.tile.convert) has the f32 tile's fragments in its element type.
  void convertTile(attn::TileType type, llvm::SmallVectorImpl<mlir::Type> &out) const;
  /// Whether q tiles stay in workgroup memory (converted to one index: which
  /// of the resident buffers) and scores() reads their fragments at each
  /// use, instead of holding them in registers across the loop: the
  /// backward's kernels at large head dims, whose accumulators take the
  /// registers.
  virtual bool residentOperands() const { return false; }
  /// Whether the variant's integer code and the element positions of a
  /// tile are 32-bit where that is exact (RegionInlining::narrow): not in
  /// the backward's key-major (`transposed`) tiles, whose positions vary
  /// along both axes (narrowed, per-batch documents' dK/dV kernel spilled
  /// 12 bytes on sm_80 at D = 128).
  virtual bool narrowIntegers(bool transposed) const { return !transposed; }
  /// Workgroup memory the kernel needs beyond its attributions (bytes of
  /// dynamic shared memory, recorded in its attn.launch).
  virtual int64_t dynamicSharedBytes() const { return 0; }
  /// Called once per kernel before the patterns run (e.g. to add workgroup
  /// attributions and keep them for the lowering); a failure has said why.
  virtual mlir::LogicalResult prepareKernel(mlir::gpu::GPUFuncOp kernel) {
    return mlir::success();
  }

  /// The block-relative query row of the lane's row `slot`.
  virtual Value slotRow(OpBuilder &b, Location loc, unsigned slot) const = 0;
  /// The block's rows of (batch, head) of a tensor `cols` wide as the
  /// lane's operand fragments (zeros for rows that are not real): Q in the
  /// forward; Q and dO, or K and V, in the backward (`part` 0 and 1: the
  /// load's, which buffer the rows go through or stay in). `round`: a
  /// persistent worker's how-many-th load of Q (attn.tile.load's round),
  /// or null.
  virtual llvm::SmallVector<Value> loadQ(OpBuilder &b, Location loc, Value q, Value batch,
                                         Value head, const QueryRows &rows, attn::Layout layout,
                                         int64_t cols, int64_t part, Value round) const = 0;
  /// A col tile of `count` columns: how many f32 a lane holds (0: the
  /// target has no col tiles), which of them the element at position `e`
  /// of elements() reads, and the values of tensor[batch, head, token] for
  /// the lane's columns of `cols` (0 past the sequence).
  virtual int64_t columnsPerLane(int64_t count) const { return 0; }
  virtual unsigned columnOf(unsigned e) const { return 0; }
  virtual llvm::SmallVector<Value> loadColumns(OpBuilder &b, Location loc, Value tensor,
                                               Value batch, Value head, const QueryRows &cols,
                                               int64_t count) const {
    return {};
  }
  /// The K and V rows of key tile `keys` into staging slot `stage` (zeros
  /// for rows that are not real: past the sequence, a patch's holes); may be
  /// asynchronous until waitKV(). `keys` is flat (rows [first, first + keys)
  /// of a sequence of `end`) unless takesPatches(). `pages`: a paged cache's
  /// page table (KeyRows.h), or null.
  virtual void copyKV(OpBuilder &b, Location loc, Value k, Value v, Value batch, Value head,
                      const QueryRows &keys, Value stage, attn::Layout layout,
                      Value pages) const = 0;
  /// Slot `stage`'s tensor `part` is about to be read (attn.tile.load of a
  /// staged tile of rows [kv0, kv0 + keys) of a sequence of `seq`, where
  /// its span is not known to be in bounds; every thread of the block is
  /// here). copyKV promises zeros past `seq`: a target whose copies cannot
  /// (TMA zero-fills past the tensor's extent only, not past a ragged
  /// entry's length) clears those rows here. The default: nothing.
  virtual void readStaged(OpBuilder &b, Location loc, Value tensor, Value stage, int64_t part,
                          Value kv0, Value seq) const {}
  /// Closes a group of asynchronous copies (nothing for synchronous ones).
  virtual void commitKV(OpBuilder &b, Location loc) const {}
  /// This lane's copy groups but the `pending` newest are done, then every
  /// lane of the block is here.
  virtual void waitKV(OpBuilder &b, Location loc, int64_t pending) const = 0;
  /// Warp-specialized staging (--attn-warp-specialize; docs/passes.md): the
  /// producer waits until slot `stage` may take its fill `round`; a
  /// consumer waits until fill `round` of slot `stage` has landed; a
  /// consumer thread is done with slot `stage`. Only a target with a
  /// producer warpgroup has them (the default: failure, an error).
  virtual mlir::LogicalResult acquireKV(OpBuilder &b, Location loc, Value stage,
                                        Value round) const {
    return mlir::failure();
  }
  /// (`part`: only the slot's tensor 0 or 1; none: both.)
  virtual mlir::LogicalResult waitFill(OpBuilder &b, Location loc, Value stage, Value round,
                                       std::optional<int64_t> part) const {
    return mlir::failure();
  }
  virtual mlir::LogicalResult releaseKV(OpBuilder &b, Location loc, Value stage) const {
    return mlir::failure();
  }
  /// Threads per block (the kernel's attn.launch): the waves that own the
  /// query rows, plus a producer's where the target adds one.
  virtual int64_t launchThreads() const { return shape.threads(); }
  /// S = Q K^T for the lane's rows and the keys of slot `stage` (its
  /// tensor `part`: K in the forward, any row-major tile in the backward).
  virtual llvm::SmallVector<Value> scores(OpBuilder &b, Location loc, mlir::ValueRange q,
                                          Value stage, int64_t part) const = 0;
  /// The elements of accumulator fragments (S or O), fragment by fragment,
  /// each in its own fixed order; assemble() gives the fragments with their
  /// elements replaced by `values` (that order).
  virtual llvm::SmallVector<Element> elements(OpBuilder &b, Location loc,
                                              mlir::ValueRange fragments) const = 0;
  llvm::SmallVector<Value> assemble(OpBuilder &b, Location loc, mlir::ValueRange fragments,
                                    llvm::ArrayRef<Value> values) const;
  /// Max or sum of `x` over the lanes that hold the same row.
  virtual Value rowReduce(OpBuilder &b, Location loc, Value x, bool max) const = 0;
  /// How many lanes hold a row (rowReduce's group; 0 where rows are not
  /// shared so), and which of them this lane is (0 .. rowLanes() - 1).
  virtual int64_t rowLanes() const { return 0; }
  virtual Value rowLane(OpBuilder &b, Location loc) const { return {}; }
  /// Each row of an O accumulator fragment times its slot's factor.
  virtual Value scaleRows(OpBuilder &b, Location loc, Value acc,
                          llvm::ArrayRef<Value> perSlot) const = 0;
  /// O += P V: P per element in elements() order (f32), V in slot `stage`
  /// (its tensor `part`).
  virtual void accumulatePV(OpBuilder &b, Location loc, llvm::ArrayRef<Value> p, Value stage,
                            int64_t part, llvm::MutableArrayRef<Value> o) const = 0;
  /// Asynchronous products (`async` attn.tile.qk / pv, --attn-overlap-softmax):
  /// scoresAsync / accumulatePVAsync issue the products and give their
  /// results, which may be read only once waitProducts has returned them
  /// (every product issued but the `pending` newest complete; the fragments
  /// replaced by ones that are). Targets whose products are synchronous keep
  /// the defaults: the synchronous forms and a wait that does nothing.
  /// scoresAsync's scores are not yet scaled (the wait's lowering scales
  /// them once complete).
  virtual bool asyncProducts() const { return false; }
  virtual llvm::SmallVector<Value> scoresAsync(OpBuilder &b, Location loc, mlir::ValueRange q,
                                               Value stage, int64_t part) const {
    return scores(b, loc, q, stage, part);
  }
  virtual void accumulatePVAsync(OpBuilder &b, Location loc, llvm::ArrayRef<Value> p,
                                 Value stage, int64_t part,
                                 llvm::MutableArrayRef<Value> o) const {
    accumulatePV(b, loc, p, stage, part, o);
  }
  virtual void waitProducts(OpBuilder &b, Location loc, int64_t pending,
                            llvm::MutableArrayRef<Value> fragments) const {}
  /// Ping-pong (attn.tile.take_turn / pass_turn): this warpgroup waits for
  /// its turn at the matrix units (`take`) or hands it on. Nothing by default.
  virtual void turn(OpBuilder &b, Location loc, bool take) const {}
  /// Whether this lane writes the lse of its rows (one lane per row).
  virtual Value ownsRowStats(OpBuilder &b, Location loc) const = 0;
  /// 16-byte output stores: whether rowRuns() regroups `fragments` O
  /// accumulator fragments into runs of 8 consecutive columns of `elt`.
  virtual bool hasRowRuns(int64_t fragments, mlir::Type elt) const { return false; }
  /// Row slot `slot` of the O fragments `acc`, times `scale`, in `elt`,
  /// regrouped across the lanes that hold the row so that this lane holds
  /// whole runs of 8 columns: `write(first column, vector<8 x elt>)` per run,
  /// as soon as it is formed. Every lane must call it (it shuffles); only
  /// where hasRowRuns().
  virtual void rowRuns(OpBuilder &b, Location loc, mlir::ValueRange acc, unsigned slot,
                       Value scale, mlir::Type elt,
                       llvm::function_ref<void(Value, Value)> write) const {}
  /// 2^x in f32 for the online softmax's weights (x <= 0 or -inf): math.exp2
  /// by default; NVIDIA and AMD use their hardware instruction.
  virtual Value exp2(OpBuilder &b, Location loc, Value x) const;

  const KernelShape shape;
  /// A backward kernel's gradient buffers (lowerMatrixCoreKernels sets them).
  GradientAccumulators gradients;
};

/// The tile-level type converter of a matrix-core target.
class MatrixCoreTypeConverter : public mlir::TypeConverter {
public:
  explicit MatrixCoreTypeConverter(const MatrixCoreTarget &target);
};

/// A conversion pattern of a matrix-core target's tile op, the target at
/// hand (MatrixCorePatterns.cpp, BackwardPatterns.cpp).
template <typename Op> struct TargetPattern : mlir::OpConversionPattern<Op> {
  TargetPattern(const mlir::TypeConverter &converter, mlir::MLIRContext *ctx,
                const MatrixCoreTarget &target)
      : mlir::OpConversionPattern<Op>(converter, ctx), target(target) {}
  const MatrixCoreTarget &target;
};

/// Index helpers every GPU pattern uses.
Value index(OpBuilder &b, Location loc, int64_t v);
Value i32(OpBuilder &b, Location loc, int64_t v);
Value threadId(OpBuilder &b, Location loc);
/// A work item's (b, h, t) on a GPU: its block's (z, y, x).
llvm::SmallVector<Value, 3> workItemIds(OpBuilder &b, Location loc);
/// The thread's lane in its wave of `waveSize` lanes.
Value laneId(OpBuilder &b, Location loc, int64_t waveSize);
/// Max or sum of `x` over the lanes whose ids differ from this lane's in
/// the bits `from`, 2 `from`, ... below `to` (xor shuffles of `width` lanes).
Value xorReduce(OpBuilder &b, Location loc, Value x, int64_t from, int64_t to, int64_t width,
                bool max);
/// Split-KV's row statistics in its workspace: the (max, sum) of a part's
/// row at [split, batch, head, row, 0 and 1] (`at`: the first four).
void storeRowStats(OpBuilder &b, Location loc, Value stats, mlir::ValueRange at, Value max,
                   Value sum);
std::pair<Value, Value> loadRowStats(OpBuilder &b, Location loc, Value stats,
                                     mlir::ValueRange at);

/// e^(x - m) as 2^((x - m) log2 e): a subtraction, a multiplication and
/// the target's exp2 per element, where math.exp costs about ten
/// instructions through the device library. The difference comes first (not
/// FlashAttention's x log2 e - m log2 e in one FMA): an unchanged max gives
/// exactly 1, and m log2 e cannot overflow for scores near -FLT_MAX.
Value expMinus(const MatrixCoreTarget &target, OpBuilder &b, Location loc, Value x, Value m);

/// A probability `p` (f32, or already narrowed by attn.tile.convert) in the
/// product's operand type `elt`: rounded where it is wider, as it is.
Value probIn(OpBuilder &b, Location loc, mlir::Type elt, Value p);

/// Indices of (batch, head, pos, d) in `layout`.
llvm::SmallVector<Value> at(attn::Layout layout, Value batch, Value head, Value pos, Value d);

/// A vector `type` read from `memref` at `indices` where `in` holds, zeros
/// elsewhere.
Value loadOrZero(OpBuilder &b, Location loc, mlir::VectorType type, Value memref,
                 mlir::ValueRange indices, Value in);

/// The gate of query token `row` as f32: `gate` is the store's converted
/// gate operand (none: null).
Value rowGate(OpBuilder &b, Location loc, attn::TileStoreOp op, mlir::ValueRange gate,
              Value batch, Value head, Value row);

/// Copies rows [row0, row0 + rows) of a [.., S, width] tensor of (batch,
/// head) into `smem` ([prefix..][rows][>= width], zeros past `seq`), 8
/// elements per thread and step over `threads` threads; transposed: into
/// smem [width][>= rows]. With `rowList`, row i is token rowList[row0 + i]
/// (zeros where row0 + i >= seq).
void stageRows(OpBuilder &b, Location loc, Value global, Value smem, mlir::ValueRange prefix,
               attn::Layout layout, Value batch, Value head, Value row0, Value seq, int64_t rows,
               int64_t width, int64_t threads, bool transposed = false, Value rowList = {},
               Value pages = {});
/// The same for a query tile's `queryRows` (a gated or packed GQA tile's
/// rows too; never paged).
void stageRows(OpBuilder &b, Location loc, Value global, Value smem, mlir::ValueRange prefix,
               attn::Layout layout, Value batch, Value head, const QueryRows &queryRows,
               int64_t rows, int64_t width, int64_t threads, bool transposed = false);

/// The memory of `tensor` (its `meta`) as a 1-D memref of unit stride
/// starting at element `offset` of its base, `size` elements long (null:
/// INT32_MAX, a size not meant to be read).
Value unitStrideView(OpBuilder &b, Location loc, Value tensor,
                     mlir::memref::ExtractStridedMetadataOp meta, Value offset,
                     Value size = {});

/// The rows of (batch, head) of `tensor` (batch dim 0, head dim `headDim`)
/// as a 1-D view from its row 0, and the stride between rows (dim
/// `posDim`) as a signed i32: for addressing one head's rows with 32-bit
/// offsets (the caller makes sure they fit; a view may step backwards).
/// The view's size is not meant to be read.
std::pair<Value, Value> headRowsView(OpBuilder &b, Location loc, Value tensor, Value batch,
                                     Value head, unsigned headDim, unsigned posDim);

/// Moves each function holding an attn.tile.work into a `gpu.func` kernel
/// (same arguments) of `gpu.module @heed_gpu`, and erases the host
/// functions that name no kernel. Returns the kernels.
llvm::SmallVector<mlir::gpu::GPUFuncOp> outlineKernels(mlir::ModuleOp module);

/// The device kernels that build the buffer summaries the classifier reads
/// (SummaryKernels.cpp): `heed_summary_<n>` for each summarized buffer n of
/// the module's variants, in `gpu.module @heed_gpu`.
void addSummaryKernels(mlir::ModuleOp module);

/// The device kernel that builds a gated variant's routed-row lists
/// (GateRowsKernel.cpp, heed/Runtime/GateRows.h): `heed_gate_rows` in
/// `gpu.module @heed_gpu` where the module's variant is gated.
void addGateRowsKernel(mlir::ModuleOp module);

/// The patterns of every GPU target: work items on block ids, flat spans,
/// barriers, statistics (not kept on GPUs), and TileCommon's.
void populateGPUStructurePatterns(const mlir::TypeConverter &converter,
                                  mlir::RewritePatternSet &patterns);

/// The tile ops on a matrix-core target.
void populateMatrixCorePatterns(const mlir::TypeConverter &converter,
                                const MatrixCoreTarget &target,
                                mlir::RewritePatternSet &patterns);

/// The backward's tile ops on a matrix-core target (BackwardPatterns.cpp):
/// load_rows, probs, grad_scores, write_rows.
void populateMatrixCoreBackwardPatterns(const mlir::TypeConverter &converter,
                                        const MatrixCoreTarget &target,
                                        mlir::RewritePatternSet &patterns);

/// Where each accumulator element of a score tile is: its query token (a
/// row slot's, or in a transposed tile its column's) and key (clamped to
/// the last real one, so padding evaluates the variant at real positions),
/// and whether the pair is visible (in bounds and, unless `masked` is
/// false, under the mask). `rows`/`cols` are the converted query/key spans.
struct ElementPositions {
  llvm::SmallVector<Value> q, kv, head, visible; ///< head: the element's query's
};
ElementPositions elementPositions(OpBuilder &b, Location loc, const MatrixCoreTarget &target,
                                  llvm::ArrayRef<Element> elements, attn::VariantOp variant,
                                  const QueryRows &rows, const QueryRows &cols, bool keysInBounds,
                                  bool masked, bool transposed, Value batch, Value head,
                                  const heed::RegionInlining &how);

/// The kernel's first span of a patch tile, or null (flat tiles only).
attn::TileSpanOp firstPatchedSpan(mlir::gpu::GPUFuncOp kernel);

/// Outlines the kernels of `module` (outlineKernels), rejects what no GPU
/// kernel has (a patch's span carried through loops or branches), lowers
/// each kernel's tile ops
/// with `lowerKernel`, then the host code's tile counts, and erases the
/// variants no op names any more.
mlir::LogicalResult
lowerGPUKernels(mlir::ModuleOp module,
                llvm::function_ref<mlir::LogicalResult(mlir::gpu::GPUFuncOp)> lowerKernel);

/// Applies `patterns` with populateGPUStructurePatterns' and the SCF
/// structural type conversions to `kernel`: every attn op but the variants'
/// must go.
mlir::LogicalResult convertGPUKernel(mlir::gpu::GPUFuncOp kernel,
                                     const mlir::TypeConverter &converter,
                                     mlir::RewritePatternSet &&patterns);

/// Lowers the tile ops of every kernel of `module` with a target from
/// `makeTarget(shape)` (the shape read off the kernel's tiles); records
/// each kernel's attn.launch. `name` prefixes errors.
mlir::LogicalResult lowerMatrixCoreKernels(
    mlir::ModuleOp module, llvm::StringRef name,
    llvm::function_ref<std::unique_ptr<MatrixCoreTarget>(const KernelShape &)> makeTarget,
    llvm::function_ref<void(KernelShape &)> completeShape);

} // namespace heed::gpu_tile

#endif
