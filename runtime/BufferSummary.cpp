// See BufferSummary.h.
#include "heed/Runtime/BufferSummary.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace heed {

int64_t summaryOffset(const TensorRef &buffer, int64_t i) {
  const std::vector<int64_t> &strides = buffer.effectiveStrides();
  if (strides.empty())
    return i;
  // Entry i in row-major order over the logical shape.
  int64_t offset = 0;
  for (size_t d = strides.size(); d-- > 0;) {
    int64_t n = std::max<int64_t>(buffer.shape[d], 1);
    offset += (i % n) * strides[d];
    i /= n;
  }
  return offset;
}

int64_t summarySpan(const TensorRef &buffer) {
  int64_t length = buffer.numElements();
  return length > 0 ? summaryOffset(buffer, length - 1) + 1 : 0;
}

SummaryLayout summaryLayout(const TensorRef &buffer, int64_t g) {
  SummaryLayout l;
  l.block = g;
  l.length = buffer.numElements();
  // Rank 2: rows end to end, each padded to whole blocks with its last entry
  // (so a block never mixes two rows and the padding widens no range).
  l.rowLength = buffer.shape.size() == 2 ? buffer.shape[1] : l.length;
  l.rowStride = buffer.shape.size() == 2 ? (l.rowLength + g - 1) / g * g : l.length;
  if (buffer.shape.size() == 2 && l.rowLength > 0)
    l.length = buffer.shape[0] * l.rowStride;
  l.blocks = std::max<int64_t>((l.length + g - 1) / g, 1);
  l.levels = 1;
  while ((int64_t(1) << l.levels) <= l.blocks)
    ++l.levels;
  return l;
}

SummaryTable buildSummaryTable(const TensorRef &buffer, int64_t g) {
  SummaryLayout l = summaryLayout(buffer, g);
  int64_t length = l.length, rowLength = l.rowLength, rowStride = l.rowStride;
  auto value = [&](int64_t i) -> int64_t {
    if (rowStride > 0 && rowLength > 0)
      i = i / rowStride * rowLength + std::min(i % rowStride, rowLength - 1);
    const char *p = static_cast<const char *>(buffer.data) +
                    summaryOffset(buffer, i) * int64_t(dtypeSize(buffer.dtype));
    switch (buffer.dtype) {
    case DType::I8: return *reinterpret_cast<const int8_t *>(p);
    case DType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::I64: { int64_t v; std::memcpy(&v, p, 8); return v; }
    case DType::Bool: return *reinterpret_cast<const uint8_t *>(p) != 0;
    default: return 0; // summaries are of integer buffers only
    }
  };
  SummaryTable t;
  t.blocks = l.blocks;
  t.levels = l.levels;
  t.data.assign(size_t(t.levels * t.blocks * 2), 0);
  auto at = [&](int64_t level, int64_t blk, int64_t which) -> int64_t & {
    return t.data[size_t((level * t.blocks + blk) * 2 + which)];
  };
  for (int64_t blk = 0; blk < t.blocks; ++blk) {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (int64_t i = blk * g; i < std::min(blk * g + g, length); ++i) {
      lo = std::min(lo, value(i));
      hi = std::max(hi, value(i));
    }
    at(0, blk, 0) = lo;
    at(0, blk, 1) = hi;
  }
  for (int64_t k = 1; k < t.levels; ++k)
    for (int64_t i = 0; i + (int64_t(1) << k) <= t.blocks; ++i) {
      int64_t j = i + (int64_t(1) << (k - 1));
      at(k, i, 0) = std::min(at(k - 1, i, 0), at(k - 1, j, 0));
      at(k, i, 1) = std::max(at(k - 1, i, 1), at(k - 1, j, 1));
    }
  return t;
}

} // namespace heed
