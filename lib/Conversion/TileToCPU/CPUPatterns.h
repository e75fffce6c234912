// The CPU lowering of the tile ops (private to lib/Conversion/TileToCPU):
// how tiles are represented, and one populate function per op family.
//
// A tile of R query rows is processed with the rows in vector lanes: the
// scores of one key for every row form a vector<R x f32>, so a row's softmax
// statistics stay in its lane and no horizontal reduction is ever needed.
//   q   [R x D]  -> memref<D x R x f32>   (transposed: qT[d] is a vector over rows)
//   k/v [N x D]  -> memref<N x D x f32>   (rows as f32; holes are zero rows)
//   s   [R x N]  -> memref<N x R x f32>   (key-major: sT[j] is a vector over rows)
//   acc [R x Dv] -> memref<R x Dv x f32>
//   row [R]      -> vector<R x f32>
//   span<N>      -> (vector<N x index> tokens, vector<N x i1> real, index lo, index hi,
//                    index lanes: the real lanes lie in [0, lanes),
//                    vector<N x index> heads: each lane's query head offset from
//                    the work item's head; 0 but in packed GQA tiles)
// Memrefs are stack buffers at the function's entry; the ops that produce
// an s or acc tile from one of the same role (apply, softmax, pv) update it
// in place.
#ifndef HEED_LIB_CONVERSION_TILETOCPU_CPUPATTERNS_H
#define HEED_LIB_CONVERSION_TILETOCPU_CPUPATTERNS_H

#include "../TileCommon/VariantRegions.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Transforms/DialectConversion.h"

#include <functional>

namespace heed::cpu {

class CPUTypeConverter : public mlir::TypeConverter {
public:
  explicit CPUTypeConverter(mlir::MLIRContext *ctx);
};

/// The converted values of a span.
struct Span {
  mlir::Value tokens, real, lo, hi, lanes, heads;
  explicit Span(mlir::ValueRange converted)
      : tokens(converted[0]), real(converted[1]), lo(converted[2]), hi(converted[3]),
        lanes(converted[4]), heads(converted[5]) {}
};

/// The packed GQA span a query tile was loaded over, where its head dim is a
/// whole number of row vectors (rows | D), else null. Such a tile is stored
/// row-major in its memref<D x R>: row r's d-th element at
/// [r * D/R + d / R, d % R], so its chunk c of R elements is one vector at
/// [r * D/R + c, 0], and attn.tile.qk runs along the head dim over its real
/// rows only (decode: few rows, every key read once).
attn::TilePackedSpanOp packedQuery(mlir::Value qTile);
/// The real rows of a packed tile of `rows` rows: min(R, group * Sq - tile * R).
mlir::Value packedRealRows(mlir::ConversionPatternRewriter &rewriter, mlir::Location loc,
                           attn::TilePackedSpanOp packed, int64_t rows);

/// The query head of lane `i` of `span`: `head` plus the lane's offset.
mlir::Value laneHead(mlir::OpBuilder &b, mlir::Location loc, const Span &span, mlir::Value head,
                     mlir::Value i);

/// Element `i` (a dynamic index) of vector `vec`.
mlir::Value extractAt(mlir::OpBuilder &b, mlir::Location loc, mlir::Value vec, mlir::Value i);

/// Emits `body(lane, head, token)` for each real lane of `span` (a loop over
/// its lanes, each under `if real`): the lane's head and token.
void forRealLanes(mlir::OpBuilder &b, mlir::Location loc, const Span &span, mlir::Value head,
                  int64_t lanes, llvm::function_ref<void(mlir::Value, mlir::Value, mlir::Value)> body);

/// How many f32 rows of `width` lanes a product keeps its sums in at once:
/// as many as fill 16 AVX-512 registers (half the register file; the rest
/// holds operands and broadcasts), a power of two dividing `count`, at most
/// `count` (4 rows of 64, 2 of 128; 8 keys of a 32-row score tile). More
/// left LLVM spilling and copying registers around every step.
int64_t registerGroup(int64_t count, int64_t width);

/// sums[g] += weight(i, g) * row(i) for i in [0, n), an scf.for carrying
/// the group's sums (vectors): each row(i) loaded once for the group, the
/// scalar weights broadcast. Returns the sums after the loop.
llvm::SmallVector<mlir::Value>
accumulateRows(mlir::OpBuilder &b, mlir::Location loc, mlir::Value n, mlir::ValueRange sums,
               llvm::function_ref<mlir::Value(mlir::Value)> row,
               llvm::function_ref<mlir::Value(mlir::Value, int64_t)> weight);

/// A stack buffer of `type` at the entry of the function holding `anchor`.
mlir::Value allocaAtEntry(mlir::OpBuilder &b, mlir::Operation *anchor, mlir::MemRefType type);
mlir::Value splat(mlir::OpBuilder &b, mlir::Location loc, mlir::VectorType type, double value);
mlir::Value index(mlir::OpBuilder &b, mlir::Location loc, int64_t value);
/// 2^x on f32 vectors by a polynomial (x <= -127, -inf included, gives 0).
mlir::Value exp2(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);
inline constexpr double kLog2E = 1.4426950408889634;
/// The online softmax's running max, s > m ? s : m (one vmaxps; a NaN score
/// leaves m, as maxnum would, and reaches the output through its weight).
mlir::Value runningMax(mlir::OpBuilder &b, mlir::Location loc, mlir::Value s, mlir::Value m);
/// e^x (x <= 0) and ln x on f32 vectors: exp2 and log2 scaled.
mlir::Value cpuExp(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);
mlir::Value cpuLog(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);
/// Indices of (batch, head, position, d) in `layout`.
llvm::SmallVector<mlir::Value> at(attn::Layout layout, mlir::Value batch, mlir::Value head,
                                  mlir::Value pos, mlir::Value d);

/// attn.load on vectors of indices (VariantToCPU.cpp): a masked gather;
/// lanes out of range read 0 and, where `laneValid`, set `status`.
mlir::Value gatherLoad(mlir::OpBuilder &b, mlir::Location loc, mlir::Operation *anchor,
                       attn::LoadOp load, mlir::Value buffer, mlir::ValueRange indices,
                       unsigned which, mlir::Value laneValid, mlir::Value status);
/// The lanes of a key column where the variant's mask holds (its `leading`
/// arguments b, h, q, kv as vectors) among `laneValid`; with `maskIf`, the
/// mask is evaluated only when it is true (FULL tiles pass false).
mlir::Value visibleLanes(mlir::OpBuilder &b, mlir::Location loc, attn::VariantOp variant,
                         RegionInlining &how, mlir::ValueRange leading, mlir::Value laneValid,
                         mlir::ValueRange maskIf);
bool isConstantTrueMask(attn::VariantOp variant);

/// A score tile sT (memref<keys x lanes x f32>, key-major) seen by the
/// patterns that run the variant's regions on it key by key (attn.tile.apply,
/// the backward's probs and grad_scores), vectorized over the rows.
struct ScoreColumns {
  /// What the regions see for key `j`: the leading (b, h, kv) arguments as
  /// vectors over the rows (kv in i32), and which lanes are real (row, key)
  /// pairs.
  struct Column {
    mlir::Value j, b, h, kv, laneValid;
  };

  /// `adaptor`: a 1:N adaptor of an op with rows, cols, batch, head,
  /// buffers and route; `status` where its attn.loads record misses. A
  /// `transposed` tile (the backward's key-major tiles: lanes are keys,
  /// columns queries) is walked by its queries.
  template <typename Adaptor>
  ScoreColumns(mlir::OpBuilder &b, mlir::Operation *op, mlir::Value sT, Adaptor adaptor,
               mlir::Value status, bool transposed = false)
      : ScoreColumns(b, op, sT, transposed ? adaptor.getCols() : adaptor.getRows(),
                     transposed ? adaptor.getRows() : adaptor.getCols(),
                     adaptor.getBatch().front(), adaptor.getHead().front(),
                     adaptor.getBuffers(), optionalValue(adaptor.getRoute()), status) {
    this->transposed = transposed;
  }
  ScoreColumns(mlir::OpBuilder &b, mlir::Operation *op, mlir::Value sT, mlir::ValueRange rows,
               mlir::ValueRange cols, mlir::Value batch, mlir::Value head,
               llvm::ArrayRef<mlir::ValueRange> buffers, mlir::Value route, mlir::Value status);

  /// Emits `body(column)` in a loop over the tile's keys.
  void forEachKey(mlir::OpBuilder &b, llvm::function_ref<void(const Column &)> body) const;
  /// How a region is inlined for `column`: its attn.loads gather over the
  /// column's real lanes; the inlinings share `memo`.
  RegionInlining inlining(const Column &column) const;
  /// Before forEachKey: what `region` computes without the column's key
  /// (nor the score, `withScore`: its first argument), inlined once for the
  /// loop's inlinings to reuse (inlineInvariants): ALiBi's slopes[h], a
  /// document mask's doc[b, q]. Its reads gather over the real rows where
  /// the tile has a real key (the lanes the loop's reads would check) and,
  /// given `onlyIf`, only where it holds (the mask of a tile that FULL tiles
  /// skip: no read, no miss there).
  void hoistInvariants(mlir::OpBuilder &b, mlir::Region &region, bool withScore,
                       mlir::Value onlyIf = {}) const;
  /// hoistInvariants of the variant's score and mask regions, the mask's
  /// under `maskIf` as applyRegions evaluates it.
  void hoistInvariants(mlir::OpBuilder &b, attn::VariantOp variant,
                       mlir::ValueRange maskIf) const;
  /// The variant's score region at column `c` of scores `s` and the lanes
  /// of `valid` where its mask holds (evaluated only where `maskIf`, as in
  /// visibleLanes): {score'(s), visible}.
  std::pair<mlir::Value, mlir::Value> applyRegions(mlir::OpBuilder &b, attn::VariantOp variant,
                                                   const Column &c, mlir::Value s,
                                                   mlir::Value valid,
                                                   mlir::ValueRange maskIf) const;
  /// The regions' (b, h, q, kv) arguments at column `c`: the lanes' tokens
  /// are the queries (keys where transposed), the column's the key (query).
  /// Positions are i32 vectors (RegionInlining::narrow).
  llvm::SmallVector<mlir::Value, 4> positions(const Column &c) const {
    if (transposed)
      return {c.b, c.h, c.kv, rowTokens};
    return {c.b, c.h, rowTokens, c.kv};
  }
  /// Row j (key j's scores over the rows) of a tile shaped like sT.
  mlir::Value load(mlir::OpBuilder &b, mlir::Value tile, mlir::Value j) const;
  void store(mlir::OpBuilder &b, mlir::Value row, mlir::Value tile, mlir::Value j) const;

  mlir::Operation *op;
  mlir::Location loc;
  mlir::MemRefType type;
  int64_t keys, lanes;
  mlir::VectorType laneType;
  Span rows, cols;
  /// The batch and the rows' query heads as vectors over the rows.
  mlir::Value batch, heads;
  /// The rows' tokens in i32, padding lanes' clamped below 2^31 - 1 (what
  /// RegionInlining::narrow takes positions to be).
  mlir::Value rowTokens;
  llvm::SmallVector<mlir::Value> buffers;
  /// The route as a vector over the rows, or null.
  mlir::Value route;
  mlir::Value status;
  mlir::Value zero;
  bool transposed = false;
  /// The inlinings' shared values (the hoisted ones; RegionMemo).
  mutable RegionMemo memo;
};

/// What the CPU patterns cannot lower, as errors before any rewriting: a
/// variant region with non-elementwise ops or strided multi-dim buffers;
/// tensors whose head dim is not contiguous.
mlir::LogicalResult checkSupported(attn::TileApplyOp op);
mlir::LogicalResult checkHeadDimContiguous(mlir::Operation *op, mlir::Value tensor);

void populateStructurePatterns(const CPUTypeConverter &converter, mlir::RewritePatternSet &patterns);
/// The k/v loads whose rows are read once per kernel call (a decode step's
/// packed GQA tiles, a paged cache): their staging prefetches the rows ahead.
/// Elsewhere (prefill) K/V tiles are reused from cache, and the prefetches
/// would only cost instructions.
using StreamingLoads = llvm::DenseSet<mlir::Operation *>;
StreamingLoads findStreamingLoads(mlir::ModuleOp module);

/// Whole K/V tiles of a packed decode loop read in place (PackedDecodeToCPU.cpp):
/// where the target has AVX-512 BF16 (bf16-dot) and K/V are bf16, a
/// streaming k tile read only by packed attn.tile.qk and a v tile read only
/// by attn.tile.pv are not staged when every key of the tile is real; the
/// products read the tensor's rows and run on vdpbf16ps, with the rows ahead
/// prefetched between the dot products. A tile with holes (a sequence's last)
/// is staged as f32 and takes the products' general code.
struct InPlaceTile {
  mlir::Value whole; ///< i1: every key of the tile is real (then it was not staged)
  /// The indices of element d of the tile's key `key` (index values) in the
  /// tensor, and the tensor.
  std::function<llvm::SmallVector<mlir::Value>(mlir::OpBuilder &, mlir::Location, mlir::Value key,
                                               int64_t d)>
      at;
  mlir::Value tensor;
  /// Prefetches the row of the key kPrefetchKeys after the tile's key `key`.
  std::function<void(mlir::OpBuilder &, mlir::Location, mlir::Value key)> prefetchAhead;
};

/// `inPlace()` where `tile` is whole, else `staged()` (each yields values of
/// `types`, maybe none): the results.
llvm::SmallVector<mlir::Value> ifWhole(mlir::OpBuilder &b, mlir::Location loc,
                                       const InPlaceTile &tile, mlir::TypeRange types,
                                       llvm::function_ref<llvm::SmallVector<mlir::Value>()> inPlace,
                                       llvm::function_ref<llvm::SmallVector<mlir::Value>()> staged);

class InPlaceTiles {
public:
  explicit InPlaceTiles(bool bf16Dot) : bf16Dot(bf16Dot) {}
  /// Whether the streaming flat k/v load `load` is read in place where whole.
  bool takes(attn::TileLoadOp load) const;
  void add(mlir::Operation *load, InPlaceTile tile) { tiles[load] = std::move(tile); }
  /// The in-place tile `tile` (an original tile value) was loaded as, or null.
  const InPlaceTile *lookup(mlir::Value tile) const;

private:
  bool bf16Dot;
  llvm::DenseMap<mlir::Operation *, InPlaceTile> tiles;
};

/// S^T of a whole in-place k tile for a packed query tile (see
/// packedQuery) on vdpbf16ps: rows in groups of 4, keys in groups of 4, 16
/// sums reduced by one transposing tree (sumAcross), stored into sT's
/// [key][row] lanes.
void inPlaceScores(mlir::ConversionPatternRewriter &rewriter, mlir::Location loc,
                   attn::TilePackedSpanOp packed, mlir::Value qRows, const InPlaceTile &k,
                   mlir::Value sT, int64_t keys, int64_t rows, int64_t depth, double scale);
/// acc[r] = acc[r] * alpha[r] + sum_j P[j][r] V[j] for a whole in-place v
/// tile on vdpbf16ps (keys in pairs: V rows interleaved, P rounded to bf16),
/// rows in groups of 4 up to `realRows`.
void inPlacePV(mlir::ConversionPatternRewriter &rewriter, mlir::Operation *op, mlir::Value pT,
               const InPlaceTile &v, mlir::Value acc, mlir::Value alpha, mlir::Value realRows,
               int64_t keys, int64_t width);
/// The online softmax step of a packed tile whose k tile was read in place
/// and whole, over its real rows in groups of 4: the scores of 4 keys x 4
/// rows in one vector (lane 4 j + r), so that a tile of 16 keys takes 4
/// exponentials per row group where the general step takes 16 (one per
/// key, each over 16 lanes of which a GQA group fills 4). Reads and writes
/// sT ([key][row]); m and l are the rows' statistics; returns {m', l',
/// alpha} as row vectors (rows past the groups keep m and l, alpha 1).
llvm::SmallVector<mlir::Value> inPlaceSoftmax(mlir::ConversionPatternRewriter &rewriter,
                                              mlir::Operation *op, mlir::Value sT, mlir::Value m,
                                              mlir::Value l, mlir::Value realRows);
/// The sums of R vectors of R lanes as one vector, lane j the sum of
/// vector j (MatmulToCPU.cpp).
mlir::Value sumAcross(mlir::OpBuilder &b, mlir::Location loc, llvm::ArrayRef<mlir::Value> vectors);

void populateLoadStorePatterns(const CPUTypeConverter &converter, mlir::RewritePatternSet &patterns,
                               const StreamingLoads &streaming, InPlaceTiles &inPlace);
void populateMatmulPatterns(const CPUTypeConverter &converter, mlir::RewritePatternSet &patterns,
                            const InPlaceTiles &inPlace);
void populateSoftmaxPatterns(const CPUTypeConverter &converter, mlir::RewritePatternSet &patterns,
                             const InPlaceTiles &inPlace);
void populateVariantPatterns(const CPUTypeConverter &converter, mlir::RewritePatternSet &patterns);
/// The split-KV schedule's partial states (PartialsToCPU.cpp).
void populatePartialPatterns(const CPUTypeConverter &converter, mlir::RewritePatternSet &patterns);
/// The backward's tile ops (BackwardToCPU.cpp, docs/backward.md).
void populateBackwardPatterns(const CPUTypeConverter &converter, mlir::RewritePatternSet &patterns);

} // namespace heed::cpu

#endif
