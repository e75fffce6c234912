// Buffer summaries: what a variant's block classifier reads to reason about
// a rank-1 integer buffer (document ids and the like) over a range of
// entries, or a rank-2 one (per-batch document ids) in row-major order. Built by the runtime per call (CPU: cached by buffer content in
// runtime/Launch.cpp; GPU: from the device buffer, GPUAttentionLaunch.h) and
// passed to the kernel as a memref<levels x blocks x 2 x i64>.
#ifndef HEED_RUNTIME_BUFFERSUMMARY_H
#define HEED_RUNTIME_BUFFERSUMMARY_H

#include "heed/Runtime/Tensor.h"

#include <cstdint>
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
