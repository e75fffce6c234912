// float64 reference attention with the variant's expressions interpreted.
#include "heed/Runtime/Reference.h"

#include "heed/Frontend/Evaluate.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <functional>
#include <cmath>
#include <limits>
#include <random>
#include <thread>

namespace heed {
namespace {

unsigned threadCount(unsigned threads) {
  return threads ? threads : std::max(1u, std::thread::hardware_concurrency());
}

/// Runs body(0..n-1) on n threads (the caller's among them) and waits.
void runOnThreads(unsigned threads, const std::function<void(unsigned)> &body) {
  unsigned n = threadCount(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n; ++t)
    pool.emplace_back(body, t);
  body(0);
  for (std::thread &t : pool)
    t.join();
}

/// Logical [b, h, s, d] -> flat index of a contiguous tensor in `layout`.
int64_t flat(const std::vector<int64_t> &shape, Layout layout, int64_t b, int64_t h,
             int64_t s, int64_t d) {
  if (layout == Layout::BSHD)
    return ((b * shape[1] + s) * shape[2] + h) * shape[3] + d;
  return ((b * shape[1] + h) * shape[2] + s) * shape[3] + d;
}

/// A q, k or v tensor read as float64 rows of its head dim: widened once
/// where that takes at most kWidenLimit doubles, else read in place.
class Rows {
public:
  static constexpr int64_t kWidenLimit = int64_t(1) << 28; // 2 GiB

  Rows(const HostTensor &t, Layout layout) : t(t), layout(layout), dim(t.shape()[3]) {
    if (t.size() > kWidenLimit)
      return;
    wide.resize(size_t(t.size()));
    for (int64_t i = 0; i < t.size(); ++i)
      wide[size_t(i)] = t.get(i);
  }
  /// Row (b, h, s) into `scratch` (or in place); returns the row.
  const double *row(int64_t b, int64_t h, int64_t s, std::vector<double> &scratch) const {
    int64_t base = flat(t.shape(), layout, b, h, s, 0);
    if (!wide.empty())
      return &wide[size_t(base)];
    scratch.resize(size_t(dim));
    for (int64_t d = 0; d < dim; ++d)
      scratch[size_t(d)] = t.get(base + d);
    return scratch.data();
  }

private:
  const HostTensor &t;
  Layout layout;
  int64_t dim;
  std::vector<double> wide;
};

} // namespace

std::vector<spec::BufferData> widenBuffers(const std::vector<HostTensor> &buffers) {
  std::vector<spec::BufferData> data;
  for (const HostTensor &t : buffers) {
    spec::BufferData d;
    d.shape = t.shape();
    d.values.resize(t.size());
    for (int64_t i = 0; i < t.size(); ++i)
      d.values[i] = t.get(i);
    data.push_back(std::move(d));
  }
  return data;
}

std::vector<uint8_t> queryRows(const std::vector<int64_t> &qLens, int64_t heads, int64_t seqQ) {
  std::vector<uint8_t> rows;
  rows.reserve(qLens.size() * size_t(heads * seqQ));
  for (int64_t len : qLens)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < seqQ; ++i)
        rows.push_back(i < len);
  return rows;
}

/// A row's scores `s` (over keys `at`) made its weights under the variant's
/// gate, sink and normalization; `lse` and `out` (Dv values, zero on entry)
/// written. A gated row not routed (gate 0) is zero with lse -inf. Returns
/// the 1-based buffer the gate or sink read out of range, or 0.
static int weighRow(const spec::Variant &variant, const std::vector<spec::BufferData> &data,
             const spec::EvalShape &shape, std::array<int64_t, 3> bhi, std::vector<double> &s,
             const std::vector<int64_t> &at,
             const std::function<const double *(int64_t, std::vector<double> &)> &valueRow,
             std::vector<double> &scratch, int64_t Dv, double &lse, double *out) {
  auto [b, h, i] = bhi;
  int oob = 0;
  double gate = 1;
  if (variant.gate)
    gate = spec::evaluate(*variant.gate, spec::EvalPoint{b, h, i, 0, 0, shape}, data, &oob);
  double sink = 0;
  if (variant.sink)
    sink = spec::evaluate(*variant.sink, spec::EvalPoint{b, h, 0, 0, 0, shape}, data, &oob);
  if (gate == 0) {
    lse = -std::numeric_limits<double>::infinity();
    return oob;
  }
  lse = spec::normalizeRow(variant, s, sink);
  for (size_t n = 0; n < at.size(); ++n) {
    if (s[n] == 0)
      continue;
    const double *vr = valueRow(at[n], scratch);
    for (int64_t d = 0; d < Dv; ++d)
      out[d] += s[n] * vr[d];
  }
  for (int64_t d = 0; d < Dv; ++d)
    out[d] *= gate;
  return oob;
}

ReferenceResult referenceAttention(const spec::Variant &variant, const HostTensor &q,
                                   const HostTensor &k, const HostTensor &v,
                                   Layout layout, double scale,
                                   const std::vector<HostTensor> &buffers,
                                   unsigned threads, const std::vector<uint8_t> *onlyRows,
                                   const std::vector<int64_t> *kvLens,
                                   const std::vector<int64_t> *qLens) {
  bool bshd = layout == Layout::BSHD;
  int64_t B = q.shape()[0];
  int64_t Hq = q.shape()[bshd ? 2 : 1], Sq = q.shape()[bshd ? 1 : 2];
  int64_t Hkv = k.shape()[bshd ? 2 : 1], Skv = k.shape()[bshd ? 1 : 2];
  int64_t D = q.shape()[3], Dv = v.shape()[3];
  int64_t group = Hkv ? Hq / Hkv : 1;

  std::vector<spec::BufferData> data = widenBuffers(buffers);
  const spec::EvalShape shape{B, Hq, Hkv, Sq, Skv};

  ReferenceResult r;
  r.out.assign(B * Hq * Sq * Dv, 0);
  r.lse.assign(B * Hq * Sq, 0);
  r.lseDefined = variant.normalize != spec::Normalization::Sigmoid;
  std::atomic<int> outOfRange{0};
  std::atomic<int64_t> nextRow{0};
  int64_t rows = B * Hq * Sq;

  // The mask and the score compiled once; a mask that reads neither b nor h
  // is evaluated once per query position and shared by every (b, h) row of
  // it (each work unit is then one position with all its rows).
  spec::ExprProgram maskProgram(*variant.mask), scoreProgram(*variant.score);
  Rows kRows(k, layout), vRows(v, layout);
  bool sharedMask = !kvLens && !qLens && !maskProgram.reads(spec::IndexVar::B) &&
                    !maskProgram.reads(spec::IndexVar::H);
  int64_t rowsPerUnit = sharedMask ? B * Hq : 1;
  int64_t units = rows / std::max<int64_t>(1, rowsPerUnit);
  std::vector<int64_t> keys(Skv);
  for (int64_t j = 0; j < Skv; ++j)
    keys[j] = j;

  // A score that reads no buffer is evaluated at the visible keys only; one
  // that does, at every key (its reads are checked everywhere).
  bool scoreEverywhere = scoreProgram.readsBuffers();
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();

  std::mutex maxMutex;
  auto worker = [&] {
    double maxScore = 0;
    std::vector<double> s(Skv), dots(Skv), visible(Skv), qrow(D);
    std::vector<int64_t> shown; // the visible keys, in order
    std::vector<double> kScratch, vScratch;
    spec::ExprEvaluator mask(maskProgram, data, shape), score(scoreProgram, data, shape);
    int64_t unit;
    while ((unit = nextRow.fetch_add(1)) < units) {
     bool maskReady = false;
     for (int64_t u = 0; u < rowsPerUnit; ++u) {
      // Rows are (b, h, i) in BHSD order; a shared mask's unit is one i.
      int64_t row = sharedMask ? u * Sq + unit : unit;
      int64_t i = row % Sq, h = (row / Sq) % Hq, b = row / (Sq * Hq);
      int64_t hk = h / group;
      if (onlyRows && !(*onlyRows)[size_t(row)])
        continue;
      if (qLens && i >= (*qLens)[size_t(b)])
        continue; // past the entry's queries: not computed
      // A serving call's entry sees its own keys and reads its own Skv, Sq.
      int64_t rowKeys = kvLens ? (*kvLens)[size_t(b)] : Skv;
      spec::EvalShape rowShape = shape;
      rowShape.seqKV = rowKeys;
      if (qLens)
        rowShape.seqQ = (*qLens)[size_t(b)];
      if (kvLens || qLens) {
        mask.setShape(rowShape);
        score.setShape(rowShape);
      }
      if (!sharedMask || !maskReady) {
        maskReady = true;
        mask.setRow(b, h, i);
        mask.evaluate(keys.data(), nullptr, size_t(rowKeys), visible.data());
        shown.clear();
        for (int64_t j = 0; j < rowKeys; ++j)
          if (visible[j] != 0)
            shown.push_back(j);
      }
      std::vector<int64_t> firstKeys;
      if (scoreEverywhere && rowKeys < Skv)
        firstKeys.assign(keys.begin(), keys.begin() + rowKeys);
      const std::vector<int64_t> &at =
          !scoreEverywhere ? shown : rowKeys < Skv ? firstKeys : keys;
      for (int64_t d = 0; d < D; ++d)
        qrow[d] = q.get(flat(q.shape(), layout, b, h, i, d));
      for (size_t n = 0; n < at.size(); ++n) {
        double dot = 0;
        if (visible[at[n]] != 0) {
          const double *kr = kRows.row(b, hk, at[n], kScratch);
          for (int64_t d = 0; d < D; ++d)
            dot += qrow[d] * kr[d];
        }
        dots[n] = scale * dot;
      }
      // The scores of the keys in `at` (-inf where masked); keys left out
      // are masked, so they weigh 0 under every normalization.
      s.resize(at.size());
      score.setRow(b, h, i);
      score.evaluate(at.data(), dots.data(), at.size(), s.data());
      for (size_t n = 0; n < at.size(); ++n) {
        if (visible[at[n]] == 0)
          s[n] = kNegInf;
        else if (std::isfinite(s[n]))
          maxScore = std::max(maxScore, std::fabs(s[n]));
      }
      int oob = weighRow(variant, data, rowShape, {b, h, i}, s, at,
                         [&](int64_t key, std::vector<double> &scratch) {
                           return vRows.row(b, hk, key, scratch);
                         },
                         vScratch, Dv, r.lse[row], &r.out[row * Dv]);
      if (int first = oob ? oob : (mask.outOfRange() ? mask.outOfRange() : score.outOfRange()))
        outOfRange = first;
     }
    }
    std::lock_guard<std::mutex> lock(maxMutex);
    r.maxAbsScore = std::max(r.maxAbsScore, maxScore);
  };
  runOnThreads(threads, [&](unsigned) { worker(); });
  r.outOfRange = outOfRange;
  return r;
}


HostTensor gatherPages(const HostTensor &cache, const HostTensor &pageTable,
                       const std::vector<int64_t> &kvLens, int64_t pageSize, Layout layout) {
  bool bshd = layout == Layout::BSHD;
  int64_t batch = pageTable.shape()[0], maxPages = pageTable.shape()[1];
  int64_t heads = cache.shape()[bshd ? 2 : 1], dim = cache.shape()[3];
  int64_t capacity = maxPages * pageSize;
  auto at = [&](int64_t outer, int64_t h, int64_t s, int64_t seq) {
    return bshd ? ((outer * seq + s) * heads + h) * dim : ((outer * heads + h) * seq + s) * dim;
  };
  HostTensor out(cache.dtype(), bshd ? std::vector<int64_t>{batch, capacity, heads, dim}
                                     : std::vector<int64_t>{batch, heads, capacity, dim});
  for (int64_t i = 0; i < out.size(); ++i)
    out.set(i, 0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < kvLens[size_t(b)]; ++t) {
      auto page = static_cast<int64_t>(pageTable.get(b * maxPages + t / pageSize));
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0; d < dim; ++d)
          out.set(at(b, h, t, capacity) + d, cache.get(at(page, h, t % pageSize, pageSize) + d));
    }
  return out;
}

namespace {

/// Walks entry b's first lens[b] rows of a padded tensor (rank 4 in
/// `layout`, or rank 3 [B, H, S]) and their rows in the packed one:
/// fn(padded flat index, packed flat index, elements in a row).
template <typename Fn>
void forPackedRows(const std::vector<int64_t> &padded, const std::vector<int64_t> &lens,
                   Layout layout, int64_t packedRows, Fn fn) {
  unsigned seqDim = padded.size() == 3 || layout == Layout::BHSD ? 2 : 1;
  int64_t inner = 1; // elements after the sequence dim
  for (size_t d = seqDim + 1; d < padded.size(); ++d)
    inner *= padded[d];
  int64_t middle = seqDim == 2 ? padded[1] : 1; // heads before the sequence dim (BHSD)
  int64_t first = 0;
  for (int64_t b = 0; b < padded[0]; ++b) {
    for (int64_t m = 0; m < middle; ++m)
      for (int64_t i = 0; i < lens[size_t(b)]; ++i)
        fn(((b * middle + m) * padded[seqDim] + i) * inner,
           (m * packedRows + first + i) * inner, inner);
    first += lens[size_t(b)];
  }
}

} // namespace

HostTensor packSequences(const HostTensor &padded, const std::vector<int64_t> &lens,
                         Layout layout, int64_t slack, HostTensor *cu) {
  int64_t total = slack;
  for (int64_t len : lens)
    total += len;
  std::vector<int64_t> shape = padded.shape();
  unsigned seqDim = shape.size() == 3 || layout == Layout::BHSD ? 2 : 1;
  shape[0] = 1, shape[seqDim] = total;
  HostTensor packed(padded.dtype(), shape);
  packed.poison();
  forPackedRows(padded.shape(), lens, layout, total, [&](int64_t from, int64_t to, int64_t n) {
    for (int64_t e = 0; e < n; ++e)
      packed.set(to + e, padded.get(from + e));
  });
  if (cu) {
    *cu = HostTensor(DType::I32, {int64_t(lens.size()) + 1});
    int64_t at = 0;
    for (size_t b = 0; b <= lens.size(); ++b) {
      cu->set(int64_t(b), double(at));
      if (b < lens.size())
        at += lens[b];
    }
  }
  return packed;
}

void unpackSequences(const HostTensor &packed, const std::vector<int64_t> &lens, Layout layout,
                     HostTensor &padded) {
  unsigned seqDim = packed.shape().size() == 3 || layout == Layout::BHSD ? 2 : 1;
  forPackedRows(padded.shape(), lens, layout, packed.shape()[seqDim],
                [&](int64_t to, int64_t from, int64_t n) {
                  for (int64_t e = 0; e < n; ++e)
                    padded.set(to + e, packed.get(from + e));
                });
}

double referenceCostSeconds(const spec::Variant &variant, const AttentionDims &dims,
                            int64_t headDim, int64_t headDimV, double density) {
  // Measured on the 3-D neighborhood at 8192 tokens (a 40-node mask): about
  // 40 ns per mask evaluation and 1 ns per multiply-add of a visible pair.
  constexpr double kMaskSeconds = 40e-9, kProductSeconds = 1e-9;
  spec::ExprProgram mask(*variant.mask);
  double rows = double(dims.batch) * double(dims.headsQ) * double(dims.seqQ);
  double pairs = rows * double(dims.seqKV);
  bool shared = !mask.reads(spec::IndexVar::B) && !mask.reads(spec::IndexVar::H);
  double maskPairs = shared ? double(dims.seqQ) * double(dims.seqKV) : pairs;
  return maskPairs * kMaskSeconds + density * pairs * double(headDim + headDimV) * kProductSeconds;
}

std::vector<uint8_t> sampleRows(int64_t total, int64_t count, uint64_t seed) {
  std::vector<uint8_t> flags(size_t(std::max<int64_t>(0, total)), 0);
  if (count >= total) {
    std::fill(flags.begin(), flags.end(), 1);
    return flags;
  }
  // Floyd's algorithm: `count` distinct rows, each subset equally likely.
  std::mt19937_64 rng(seed);
  for (int64_t j = total - count; j < total; ++j) {
    int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    flags[size_t(flags[size_t(t)] ? j : t)] = 1;
  }
  return flags;
}

MaskCensus maskCensus(const spec::Variant &variant, const AttentionDims &dims,
                      const std::vector<HostTensor> &buffers, const TokenTiles &qTiles,
                      const TokenTiles &kvTiles, unsigned threads, int64_t onlyBatch) {
  std::vector<spec::BufferData> data = widenBuffers(buffers);
  const spec::EvalShape shape{dims.batch, dims.headsQ, dims.headsKV, dims.seqQ, dims.seqKV};
  int64_t nq = static_cast<int64_t>(qTiles.size()), nk = static_cast<int64_t>(kvTiles.size());
  // Key token -> its tile, and the real keys per tile.
  std::vector<int64_t> kvTile(dims.seqKV, -1), kvCount(nk, 0);
  for (int64_t t = 0; t < nk; ++t)
    for (int64_t token : kvTiles[t])
      if (token >= 0 && token < dims.seqKV) {
        kvTile[token] = t;
        ++kvCount[t];
      }
  // A mask that reads neither b nor h and no gating: every (b, h) has the
  // same census, counted once and multiplied.
  spec::ExprProgram maskProgram(*variant.mask);
  bool shared = onlyBatch < 0 && !variant.gate && !maskProgram.reads(spec::IndexVar::B) &&
                !maskProgram.reads(spec::IndexVar::H);
  int64_t copies = shared ? dims.batch * dims.headsQ : 1;
  int64_t batches = onlyBatch < 0 ? dims.batch : 1;
  int64_t items = batches * dims.headsQ * nq / std::max<int64_t>(1, copies);
  std::vector<int64_t> keys(dims.seqKV);
  for (int64_t j = 0; j < dims.seqKV; ++j)
    keys[j] = j;
  // Gated variants: the kernel's q-tiles of head (b, h) are chunks of its
  // routed rows (as many per tile as the flat tiles hold); rows not routed
  // are no work.
  std::vector<std::vector<int64_t>> routed;
  if (variant.gate) {
    routed.resize(size_t(dims.batch * dims.headsQ));
    for (int64_t b = 0; b < dims.batch; ++b)
      for (int64_t h = 0; h < dims.headsQ; ++h)
        for (int64_t i = 0; i < dims.seqQ; ++i)
          if (spec::evaluate(*variant.gate, {b, h, i, 0, 0, shape}, data) != 0)
            routed[size_t(b * dims.headsQ + h)].push_back(i);
  }
  std::atomic<int64_t> next{0};
  std::vector<MaskCensus> partial(threadCount(threads));
  auto worker = [&](unsigned w) {
    MaskCensus &c = partial[w];
    std::vector<int64_t> seen(nk);
    std::vector<double> visible(dims.seqKV);
    spec::ExprEvaluator mask(maskProgram, data, shape);
    int64_t item;
    while ((item = next.fetch_add(1)) < items) {
      int64_t qt = item % nq, bh = item / nq;
      if (onlyBatch >= 0)
        bh += onlyBatch * dims.headsQ;
      int64_t b = bh / dims.headsQ, h = bh % dims.headsQ;
      std::fill(seen.begin(), seen.end(), 0);
      int64_t rows = 0;
      std::vector<int64_t> chunk;
      if (variant.gate) {
        const std::vector<int64_t> &r = routed[size_t(bh)];
        size_t per = qTiles[0].size(), from = size_t(qt) * per;
        for (size_t k = from; k < std::min(r.size(), from + per); ++k)
          chunk.push_back(r[k]);
        // All pairs of the tile's slots count toward the total.
        int64_t slots = 0;
        for (int64_t i : qTiles[qt])
          slots += i >= 0 && i < dims.seqQ;
        for (int64_t t = 0; t < nk; ++t)
          c.totalPairs += double(slots - int64_t(chunk.size())) * kvCount[t];
      }
      for (int64_t i : variant.gate ? chunk : qTiles[qt]) {
        if (i < 0 || i >= dims.seqQ)
          continue;
        ++rows;
        mask.setRow(b, h, i);
        mask.evaluate(keys.data(), nullptr, keys.size(), visible.data());
        for (int64_t j = 0; j < dims.seqKV; ++j)
          if (kvTile[j] >= 0)
            seen[kvTile[j]] += visible[j] != 0;
      }
      for (int64_t t = 0; t < nk; ++t) {
        int64_t pairs = rows * kvCount[t];
        c.visiblePairs += seen[t];
        c.totalPairs += pairs;
        c.nonEmptyBlocks += seen[t] > 0;
        c.fullBlocks += pairs > 0 && seen[t] == pairs;
        c.totalBlocks += 1;
      }
    }
  };
  runOnThreads(static_cast<unsigned>(partial.size()), worker);
  MaskCensus total;
  for (const MaskCensus &c : partial) {
    total.visiblePairs += c.visiblePairs * double(copies);
    total.totalPairs += c.totalPairs * double(copies);
    total.nonEmptyBlocks += c.nonEmptyBlocks * copies;
    total.fullBlocks += c.fullBlocks * copies;
    total.totalBlocks += c.totalBlocks * copies;
  }
  return total;
}

MaskCensus maskCensus(const spec::Variant &variant, const AttentionDims &dims,
                      const std::vector<HostTensor> &buffers, int64_t blockQ,
                      int64_t blockKV, unsigned threads) {
  auto flatTiles = [](int64_t seq, int64_t block) {
    TokenTiles tiles((seq + block - 1) / block);
    for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t)
      for (int64_t i = t * block; i < std::min(seq, (t + 1) * block); ++i)
        tiles[t].push_back(i);
    return tiles;
  };
  return maskCensus(variant, dims, buffers, flatTiles(dims.seqQ, blockQ),
                    flatTiles(dims.seqKV, blockKV), threads);
}

double maskDensity(const spec::Variant &variant, const AttentionDims &dims,
                   const std::vector<HostTensor> &buffers, int64_t rowStride,
                   unsigned threads) {
  std::vector<spec::BufferData> data = widenBuffers(buffers);
  const spec::EvalShape shape{dims.batch, dims.headsQ, dims.headsKV, dims.seqQ, dims.seqKV};
  rowStride = std::max<int64_t>(1, rowStride);
  int64_t rowsPerHead = (dims.seqQ + rowStride - 1) / rowStride;
  int64_t rows = dims.batch * dims.headsQ * rowsPerHead;
  std::atomic<int64_t> next{0};
  std::vector<double> visible(threadCount(threads));
  spec::ExprProgram maskProgram(*variant.mask);
  std::vector<int64_t> keys(dims.seqKV);
  for (int64_t j = 0; j < dims.seqKV; ++j)
    keys[j] = j;
  auto worker = [&](unsigned t) {
    spec::ExprEvaluator mask(maskProgram, data, shape);
    std::vector<double> row(dims.seqKV);
    int64_t r;
    while ((r = next.fetch_add(1)) < rows) {
      int64_t i = (r % rowsPerHead) * rowStride, bh = r / rowsPerHead;
      int64_t b = bh / dims.headsQ, h = bh % dims.headsQ;
      if (variant.gate && spec::evaluate(*variant.gate, {b, h, i, 0, 0, shape}, data) == 0)
        continue; // not routed: no work
      mask.setRow(b, h, i);
      mask.evaluate(keys.data(), nullptr, keys.size(), row.data());
      for (double x : row)
        visible[t] += x != 0;
    }
  };
  runOnThreads(static_cast<unsigned>(visible.size()), worker);
  double total = 0;
  for (double v : visible)
    total += v;
  double pairs = double(rows) * dims.seqKV;
  return pairs ? total / pairs : 0;
}

namespace {
/// Accumulates ErrorStats one (got, reference) pair at a time.
struct Comparison {
  ErrorStats e;
  double refMax = 0;

  void add(double have, double want) {
    if (std::isnan(want)) {
      ++e.referenceNaNs;
    } else if (std::isnan(have)) {
      ++e.nanCount;
    } else if (std::isinf(want) || std::isinf(have)) {
      e.infMismatches += have != want;
    } else {
      refMax = std::max(refMax, std::fabs(want));
      e.maxAbs = std::max(e.maxAbs, std::fabs(have - want));
    }
  }
  ErrorStats finish() {
    if (!e.clean()) {
      e.maxAbs = e.relative = std::numeric_limits<double>::infinity();
      return e;
    }
    e.relative = refMax > 0 ? e.maxAbs / refMax : e.maxAbs;
    return e;
  }
};
} // namespace

bool ErrorStats::passes(double tolerance) const {
  return clean() && std::isfinite(tolerance) && relative <= tolerance;
}

std::string ErrorStats::problem() const {
  std::string text;
  auto add = [&](int64_t n, const char *what) {
    if (n)
      text += (text.empty() ? "" : "; ") + std::to_string(n) + what;
  };
  add(nanCount, " NaN in the output where the reference has none");
  add(referenceNaNs, " NaN in the float64 reference (the variant's scores are not finite "
                     "there: the output is undefined and cannot be checked)");
  add(infMismatches, " entries infinite on one side only, or of the other sign");
  return text;
}

ErrorStats compareOutput(const HostTensor &got, const std::vector<double> &ref,
                         Layout layout, const std::vector<uint8_t> *rows) {
  Comparison c;
  bool bshd = layout == Layout::BSHD;
  const auto &shape = got.shape();
  int64_t B = shape[0], H = shape[bshd ? 2 : 1], S = shape[bshd ? 1 : 2], D = shape[3];
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t d = 0; d < D; ++d)
          if (!rows || (*rows)[size_t((b * H + h) * S + s)])
            c.add(got.get(flat(shape, layout, b, h, s, d)), ref[((b * H + h) * S + s) * D + d]);
  return c.finish();
}

ErrorStats compareLse(const HostTensor &got, const std::vector<double> &ref,
                      const std::vector<uint8_t> *rows) {
  Comparison c;
  for (int64_t i = 0; i < got.size(); ++i)
    if (!rows || (*rows)[size_t(i)])
      c.add(got.get(i), ref[size_t(i)]);
  return c.finish();
}

} // namespace heed
