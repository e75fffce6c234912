// The buffer summary table (runtime/BufferSummary.cpp) that the block
// classifiers of the CPU and GPU kernels read: for random buffers, dtypes and
// strides, every range query answered the way --attn-analyze-mask asks it
// (two overlapping power-of-two runs of blocks) equals the brute-force min
// and max over those blocks' entries.
#include "heed/Runtime/BufferSummary.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

using namespace heed;

namespace {

/// min/max over the blocks covering entries [lo, hi], as the classifier's
/// sparse-table query computes it.
std::pair<int64_t, int64_t> query(const SummaryTable &t, int64_t g, int64_t lo, int64_t hi) {
  int64_t blo = lo / g, bhi = hi / g, len = bhi - blo + 1;
  int64_t level = 63 - __builtin_clzll(uint64_t(len));
  int64_t second = bhi - (int64_t(1) << level) + 1;
  auto at = [&](int64_t blk, int which) { return t.data[size_t((level * t.blocks + blk) * 2 + which)]; };
  return {std::min(at(blo, 0), at(second, 0)), std::max(at(blo, 1), at(second, 1))};
}

template <class T>
void check(DType dtype, int64_t length, int64_t stride, bool sorted, std::mt19937_64 &rng) {
  std::vector<T> storage(size_t(std::max<int64_t>(length * stride, 1)));
  std::vector<int64_t> values(static_cast<size_t>(length));
  std::uniform_int_distribution<int64_t> pick(-50, 50);
  for (int64_t i = 0; i < length; ++i)
    values[size_t(i)] = dtype == DType::Bool ? pick(rng) > 0 : pick(rng);
  if (sorted)
    std::sort(values.begin(), values.end()); // document ids
  for (int64_t i = 0; i < length; ++i)
    storage[size_t(i * stride)] = T(values[size_t(i)]);
  TensorRef ref;
  ref.data = storage.data();
  ref.dtype = dtype;
  ref.shape = {length};
  ref.strides = {stride};
  const int64_t g = 16;
  SummaryTable t = buildSummaryTable(ref, g);
  ASSERT_EQ(t.blocks, std::max<int64_t>((length + g - 1) / g, 1));
  ASSERT_EQ(int64_t(t.data.size()), t.levels * t.blocks * 2);
  ASSERT_GT(int64_t(1) << t.levels, t.blocks);
  std::uniform_int_distribution<int64_t> pos(0, length - 1);
  for (int trial = 0; trial < 300; ++trial) {
    int64_t lo = pos(rng), hi = pos(rng);
    if (lo > hi)
      std::swap(lo, hi);
    auto [mn, mx] = query(t, g, lo, hi);
    int64_t first = (lo / g) * g, last = std::min((hi / g + 1) * g, length);
    auto [bmn, bmx] = std::minmax_element(values.begin() + first, values.begin() + last);
    ASSERT_EQ(mn, *bmn) << "lo " << lo << " hi " << hi << " length " << length;
    ASSERT_EQ(mx, *bmx) << "lo " << lo << " hi " << hi << " length " << length;
  }
}

TEST(BufferSummary, RangeQueriesMatchBruteForce) {
  uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  for (int64_t length : {1, 15, 16, 17, 100, 1000, 4099})
    for (bool sorted : {false, true}) {
      check<int32_t>(DType::I32, length, 1, sorted, rng);
      check<int64_t>(DType::I64, length, 3, sorted, rng);
      check<int8_t>(DType::I8, length, 2, sorted, rng);
      check<uint8_t>(DType::Bool, length, 1, sorted, rng);
    }
}

} // namespace
