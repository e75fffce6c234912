// The float64 reference attention that compiled kernels are checked against:
// a plain loop nest with the variant's expressions interpreted in double.
#ifndef HEED_RUNTIME_REFERENCE_H
#define HEED_RUNTIME_REFERENCE_H

#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Spec.h"
#include "heed/Runtime/Tensor.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace heed {

/// The largest tolerance a self-check uses: past it a norm-wise relative
/// error no longer says the output is right.
inline constexpr double kMaxTolerance = 1e-2;

struct ReferenceResult {
  std::vector<double> out; ///< [B, Hq, Sq, Dv], always BHSD
  std::vector<double> lse; ///< [B, Hq, Sq]; -inf for fully masked rows
  /// False for sigmoid variants: their rows are not normalized, no lse is
  /// defined (kernels write NaN; `lse` holds NaN).
  bool lseDefined = true;
  int outOfRange = 0;      ///< 1-based buffer number read out of range, or 0
  double maxAbsScore = 0;  ///< largest finite |modified score| of a visible pair
  /// The error a correct f32 kernel may show: float32 rounds a score of
  /// magnitude |s| by up to |s| 2^-24, which moves its softmax weight by
  /// that much relatively. Scores of a few units allow 1e-5; ALiBi's
  /// thousands (a slope times a distance) allow proportionally more, up to
  /// kMaxTolerance (|s| of about 40000): a check never becomes vacuous.
  double f32Tolerance() const {
    return std::min(kMaxTolerance, std::max(1e-5, 4 * maxAbsScore * 0x1p-24));
  }
};

/// q, k, v are in `layout`; buffers in the variant's order. Uses up to
/// `threads` threads (0 = all cores). With `rows` (one flag per (b, h, i)
/// row, BHSD order), only the flagged rows are computed (the others stay 0).
/// With `kvLens` (one per batch entry, at most k's length), entry b sees
/// its first kvLens[b] keys and reads Skv = kvLens[b] (a serving call).
/// With `qLens` (one per batch entry, at most q's length), entry b's rows
/// 0 .. qLens[b] - 1 are computed with Sq = qLens[b]; the others stay 0.
ReferenceResult referenceAttention(const spec::Variant &variant, const HostTensor &q,
                                   const HostTensor &k, const HostTensor &v,
                                   Layout layout, double scale,
                                   const std::vector<HostTensor> &buffers,
                                   unsigned threads = 0,
                                   const std::vector<uint8_t> *rows = nullptr,
                                   const std::vector<int64_t> *kvLens = nullptr,
                                   const std::vector<int64_t> *qLens = nullptr);

/// The contiguous keys (or values) a paged cache holds for a call: [B, Hkv,
/// capacity, D] in `layout` (capacity = max_pages * pageSize), entry b's
/// token t from page pageTable[b, t / pageSize], slot t % pageSize, for t <
/// kvLens[b]; 0 past it. The cache is [pages, pageSize, Hkv, D] (BSHD) or
/// [pages, Hkv, pageSize, D] (BHSD); the table's used entries must be pages.
HostTensor gatherPages(const HostTensor &cache, const HostTensor &pageTable,
                       const std::vector<int64_t> &kvLens, int64_t pageSize, Layout layout);

/// Packed sequences (FlashAttention's varlen layout) from a padded batch:
/// the first lens[b] rows of entry b of `padded` (rank 4 in `layout`, or
/// rank 3 [B, H, S] like lse) end to end in batch 1, then `slack` rows of
/// NaN (so that a kernel reading past the entries shows). With `cu`, the
/// offsets i32 [B+1] (cu_seqlens).
HostTensor packSequences(const HostTensor &padded, const std::vector<int64_t> &lens,
                         Layout layout, int64_t slack, HostTensor *cu = nullptr);
/// The reverse of packSequences: entry b's rows of `packed` into the first
/// lens[b] rows of entry b of `padded` (its other rows unchanged).
void unpackSequences(const HostTensor &packed, const std::vector<int64_t> &lens, Layout layout,
                     HostTensor &padded);

/// How long the float64 check of a shape takes, roughly (CPU seconds over
/// all threads): the mask at every (row, key) pair it must see (once per
/// query position when the mask reads neither b nor h) and the products of
/// the visible pairs (`density` of them).
double referenceCostSeconds(const spec::Variant &variant, const AttentionDims &dims,
                            int64_t headDim, int64_t headDimV, double density);

/// `count` distinct rows of `total` drawn at random from `seed`, as flags.
std::vector<uint8_t> sampleRows(int64_t total, int64_t count, uint64_t seed);

/// Buffers as the interpreter reads them (values widened to double).
std::vector<spec::BufferData> widenBuffers(const std::vector<HostTensor> &buffers);

/// The mask evaluated on every (b, h, q, kv), counted per block (a q-tile x
/// kv-tile pair, the kernel's unit of work): the brute-force minimum of blocks
/// a kernel must visit, and the most it could treat as FULL.
struct MaskCensus {
  double visiblePairs = 0, totalPairs = 0;
  int64_t nonEmptyBlocks = 0, fullBlocks = 0, totalBlocks = 0;
  double density() const { return totalPairs ? visiblePairs / totalPairs : 0; }
};

/// A sequence cut into tiles: the token of each lane of each tile, -1 for a
/// lane that holds no token (past a grid's edge or the sequence's end).
using TokenTiles = std::vector<std::vector<int64_t>>;

/// The census over arbitrary tiles. A block of holes only holds no pair: it
/// is neither non-empty nor full (kernels do not visit it).
/// With `onlyBatch` >= 0, only that batch entry's blocks are counted (with
/// its own dims.seqKV: a serving call's entry, see servingMaskCensus).
MaskCensus maskCensus(const spec::Variant &variant, const AttentionDims &dims,
                      const std::vector<HostTensor> &buffers, const TokenTiles &qTiles,
                      const TokenTiles &kvTiles, unsigned threads = 0,
                      int64_t onlyBatch = -1);
/// The census over flat tiles of blockQ and blockKV consecutive tokens.
MaskCensus maskCensus(const spec::Variant &variant, const AttentionDims &dims,
                      const std::vector<HostTensor> &buffers, int64_t blockQ,
                      int64_t blockKV, unsigned threads = 0);

/// The fraction of visible (q, kv) pairs, from every `rowStride`-th query row
/// (an estimate for benchmarks at long lengths; exact for rowStride 1).
double maskDensity(const spec::Variant &variant, const AttentionDims &dims,
                   const std::vector<HostTensor> &buffers, int64_t rowStride,
                   unsigned threads = 0);

/// Error of `got` against the reference. Only entries where both are
/// finite enter maxAbs and relative; every other entry must agree exactly in
/// kind: a NaN in `got` (nanCount), a NaN in the reference (referenceNaNs:
/// the variant's scores were not finite there, so nothing can be checked),
/// or a +-inf on one side only or of the other sign (infMismatches). Any of
/// them makes maxAbs and relative infinite, so no tolerance passes it.
struct ErrorStats {
  double maxAbs = 0;   ///< max |got - ref| over finite pairs
  double relative = 0; ///< maxAbs / max finite |ref| (norm-wise relative error)
  int64_t nanCount = 0, referenceNaNs = 0, infMismatches = 0;

  /// No NaN and no disagreement about infinities.
  bool clean() const { return !nanCount && !referenceNaNs && !infMismatches; }
  /// clean(), and the relative error within a finite `tolerance`.
  bool passes(double tolerance) const;
  /// What made the comparison unclean ("" when clean), e.g. "12 NaN in the
  /// output where the reference has none".
  std::string problem() const;
};
/// The rows a call with q_lens computes, as flags per BHSD row (b, h, i):
/// i < qLens[b]. What compareOutput/compareLse and referenceAttention take.
std::vector<uint8_t> queryRows(const std::vector<int64_t> &qLens, int64_t heads, int64_t seqQ);

/// `got` is [B, Hq, Sq, Dv] in `layout`. With `rows` (flags per BHSD row, as
/// referenceAttention takes them), only the flagged rows are compared.
ErrorStats compareOutput(const HostTensor &got, const std::vector<double> &ref,
                         Layout layout, const std::vector<uint8_t> *rows = nullptr);
/// Log-sum-exp [B, Hq, Sq] against the reference's (absolute errors; rows
/// the mask empties must be -inf in both).
ErrorStats compareLse(const HostTensor &got, const std::vector<double> &ref,
                      const std::vector<uint8_t> *rows = nullptr);

} // namespace heed

#endif
