// Buffer summaries: what a variant's block classifier reads to reason about
// a rank-1 integer buffer (document ids and the like) over a range of
// entries, or a rank-2 one (per-batch document ids) in row-major order. Built by the runtime per call (CPU: cached by buffer content in
// runtime/Launch.cpp; GPU: from the device buffer, GPUAttentionLaunch.h) and
// passed to the kernel as a memref<levels x blocks x 2 x i64>.
#ifndef HEED_RUNTIME_BUFFERSUMMARY_H
#define HEED_RUNTIME_BUFFERSUMMARY_H

#include "heed/Runtime/Tensor.h"

#include <cstdint>
#include <string>
#include <vector>

namespace heed {

/// A sparse table: data[(level * blocks + i) * 2 + {0, 1}] is the min and
/// max of the buffer over the 2^level consecutive blocks of `block` entries
/// starting at block i (defined for i + 2^level <= blocks), as i64. The
/// classifier (--attn-analyze-mask) answers "min and max over entries
/// [lo, hi]" with two overlapping power-of-two runs of blocks.
struct SummaryTable {
  std::vector<int64_t> data;
  int64_t levels = 1, blocks = 1;
};

/// The shape of a buffer's table and how its entries are ordered: `length`
/// entries (rank 2: rows x rowStride, each row padded from rowLength to
/// rowStride, a whole number of blocks, with its last entry; rank 1:
/// rowLength = rowStride = length), `blocks` blocks of `block` entries
/// (at least 1), `levels` levels (2^(levels - 1) <= blocks < 2^levels).
/// buildSummaryTable and the device's summary kernels
/// (heed_summary_<n>) follow it alike.
struct SummaryLayout {
  int64_t length = 0, rowLength = 0, rowStride = 0, block = 16, blocks = 1, levels = 1;
  /// Bytes of the table (levels x blocks x 2 x i64).
  int64_t bytes() const { return levels * blocks * 2 * 8; }
};
SummaryLayout summaryLayout(const TensorRef &buffer, int64_t block);

/// The GPU kernel that builds buffer `buffer`'s table on the device, beside
/// the attention kernel in its image (lib/Conversion/TileToGPU/SummaryKernels.cpp):
/// one launch per level, on ceil(blocks / kSummaryThreads) blocks of
/// kSummaryThreads threads (the kernel's block size), with (buffer, table,
/// level, length, rowLength, rowStride, block, asBool).
inline constexpr int64_t kSummaryThreads = 128;
inline std::string summaryKernelName(unsigned buffer) {
  return "heed_summary_" + std::to_string(buffer);
}

/// The table of a rank-1 or rank-2 integer or bool buffer in host memory
/// (any strides). Rank 2: over its rows end to end, each padded to a whole
/// number of blocks by repeating its last entry, so that no block mixes two
/// rows (row r's entry t is entry r * roundUp(n, block) + t of the table).
SummaryTable buildSummaryTable(const TensorRef &hostBuffer, int64_t block);

/// The element offset of entry `i` (row-major order) of `buffer`.
int64_t summaryOffset(const TensorRef &buffer, int64_t i);
/// How many elements from `buffer.data` hold its entries: one past the
/// offset of the last.
int64_t summarySpan(const TensorRef &buffer);

} // namespace heed

#endif
