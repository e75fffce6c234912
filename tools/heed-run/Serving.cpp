// heed-run's serving calls: lengths and paged caches (Serving.h).
#include "Serving.h"

#include "heed/Runtime/Reference.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringRef.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <numeric>

namespace heed::run {

namespace {

/// Lengths from --kv-lens or --q-lens (`option`); what an entry can hold is
/// `capacity` (`bound` names the option that sets it).
std::string parseLens(llvm::StringRef spec, int64_t batch, int64_t capacity,
                      std::mt19937_64 &rng, std::vector<int64_t> &lens,
                      const char *option = "--kv-lens", const char *bound = "--seq-kv",
                      const char *what = "keys") {
  lens.clear();
  if (spec.empty()) {
    lens.assign(size_t(batch), capacity);
    return "";
  }
  if (spec.consume_front("random:")) {
    auto [lo, hi] = spec.split(':');
    int64_t min = 0, max = 0;
    if (lo.getAsInteger(10, min) || hi.getAsInteger(10, max) || min < 0 || min > max)
      return fmt::format("{}=random:MIN:MAX needs integers 0 <= MIN <= MAX", option);
    std::uniform_int_distribution<int64_t> pick(min, max);
    for (int64_t b = 0; b < batch; ++b)
      lens.push_back(pick(rng));
  } else {
    llvm::SmallVector<llvm::StringRef> parts;
    spec.split(parts, ',');
    for (llvm::StringRef p : parts) {
      int64_t n = 0;
      if (p.trim().getAsInteger(10, n) || n < 0)
        return fmt::format("{}: '{}' is not a length (a non-negative integer)", option,
                           p.str());
      lens.push_back(n);
    }
    if (lens.size() == 1)
      lens.assign(size_t(batch), lens[0]);
    if (int64_t(lens.size()) != batch)
      return fmt::format("{} gives {} lengths for --batch={}", option, lens.size(), batch);
  }
  for (int64_t len : lens)
    if (len > capacity)
      return fmt::format("{}: {} {} is more than {} ({}), the {} an entry can hold", option, len,
                         what, bound, capacity, what);
  return "";
}

/// The row (outer, h, s) of a [outer, seq, heads, D] (BSHD) or [outer,
/// heads, seq, D] (BHSD) tensor: its elements start at row * D.
int64_t rowIndex(Layout layout, int64_t heads, int64_t seq, int64_t outer, int64_t h,
                 int64_t s) {
  return layout == Layout::BSHD ? (outer * seq + s) * heads + h : (outer * heads + h) * seq + s;
}

} // namespace

int64_t defaultCapacity(const std::string &lensSpec, int64_t fallback) {
  llvm::StringRef spec(lensSpec);
  if (spec.consume_front("random:")) {
    int64_t max = 0;
    return spec.split(':').second.getAsInteger(10, max) ? fallback : max;
  }
  llvm::SmallVector<llvm::StringRef> parts;
  spec.split(parts, ',', -1, /*KeepEmpty=*/false);
  int64_t longest = -1;
  for (llvm::StringRef p : parts) {
    int64_t n = 0;
    if (!p.trim().getAsInteger(10, n))
      longest = std::max(longest, n);
  }
  return longest >= 0 ? longest : fallback;
}

std::string ServingCall::prepare(const std::string &lensSpec, int64_t pageSizeIn, int64_t batch,
                                 int64_t capacity, const HostTensor &k, const HostTensor &v,
                                 Layout layout, std::mt19937_64 &rng) {
  pageSize = pageSizeIn;
  if (std::string err = parseLens(lensSpec, batch, capacity, rng, lens); !err.empty())
    return err;
  if (std::string err = HostTensor::create("kv_lens", DType::I32, {batch}, kvLens); !err.empty())
    return err;
  for (int64_t b = 0; b < batch; ++b)
    kvLens.set(b, double(lens[size_t(b)]));
  if (pageSize <= 0)
    return "";
  // Every entry's pages from one pool, handed out in a random order; table
  // entries past an entry's keys hold -1 (never read).
  int64_t maxPages = pagesPerEntry(capacity, pageSize), used = 0;
  for (int64_t len : lens)
    used += pagesPerEntry(len, pageSize);
  int64_t pool = std::max<int64_t>(used, 1);
  std::vector<int64_t> order(static_cast<size_t>(pool));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  bool bshd = layout == Layout::BSHD;
  int64_t heads = k.shape()[bshd ? 2 : 1], dk = k.shape()[3], dv = v.shape()[3];
  auto cacheShape = [&](int64_t dim) {
    return bshd ? std::vector<int64_t>{pool, pageSize, heads, dim}
                : std::vector<int64_t>{pool, heads, pageSize, dim};
  };
  if (std::string err = HostTensor::create("page_table", DType::I32, {batch, maxPages}, pageTable);
      !err.empty())
    return err;
  if (std::string err = HostTensor::create("k", k.dtype(), cacheShape(dk), kPages); !err.empty())
    return err;
  if (std::string err = HostTensor::create("v", v.dtype(), cacheShape(dv), vPages); !err.empty())
    return err;
  kPages.poison(); // pages nobody owns would show as NaN if read
  vPages.poison();
  size_t next = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < maxPages; ++p) {
      bool owned = p * pageSize < lens[size_t(b)];
      int64_t page = owned ? order[next++] : -1;
      pageTable.set(b * maxPages + p, double(page));
      for (int64_t s = p * pageSize; owned && s < std::min(lens[size_t(b)], (p + 1) * pageSize);
           ++s)
        for (int64_t h = 0; h < heads; ++h) {
          int64_t from = rowIndex(layout, heads, capacity, b, h, s);
          int64_t to = rowIndex(layout, heads, pageSize, page, h, s - p * pageSize);
          for (int64_t d = 0; d < dk; ++d)
            kPages.set(to * dk + d, k.get(from * dk + d));
          for (int64_t d = 0; d < dv; ++d)
            vPages.set(to * dv + d, v.get(from * dv + d));
        }
    }
  return "";
}

std::string ServingCall::prepareQueries(const std::string &lensSpec, int64_t batch,
                                        int64_t capacity, std::mt19937_64 &rng) {
  if (std::string err =
          parseLens(lensSpec, batch, capacity, rng, queries, "--q-lens", "--seq", "queries");
      !err.empty())
    return err;
  if (std::string err = HostTensor::create("q_lens", DType::I32, {batch}, qLens); !err.empty())
    return err;
  for (int64_t b = 0; b < batch; ++b)
    qLens.set(b, double(queries[size_t(b)]));
  return "";
}

double ServingCall::pairs(int64_t heads, int64_t seqQ, int64_t seqKV) const {
  double total = 0;
  size_t batch = std::max(lens.size(), queries.size());
  for (size_t b = 0; b < batch; ++b)
    total += double(queries.empty() ? seqQ : queries[b]) * double(lens.empty() ? seqKV : lens[b]);
  return total * double(heads);
}

void ServingCall::pack(const HostTensor &q, const HostTensor &k, const HostTensor &v,
                       const HostTensor &out, const HostTensor &lse, Layout layout) {
  if (packQ) {
    packedQ = packSequences(q, queries, layout, 0, &cuSeqlensQ);
    packedOut = packSequences(out, queries, layout, 0);
    packedLse = packSequences(lse, queries, layout, 0);
  }
  if (packKV) {
    packedK = packSequences(k, lens, layout, 0, &cuSeqlensKV);
    packedV = packSequences(v, lens, layout, 0);
  }
}

void ServingCall::poisonRowsPast(HostTensor &t, const std::vector<int64_t> &kept,
                                 Layout layout) {
  bool bshd = layout == Layout::BSHD;
  const std::vector<int64_t> &shape = t.shape();
  int64_t heads = shape[bshd ? 2 : 1], seq = shape[bshd ? 1 : 2], dim = shape[3];
  double nan = std::numeric_limits<double>::quiet_NaN();
  for (int64_t b = 0; b < int64_t(kept.size()); ++b)
    for (int64_t s = kept[size_t(b)]; s < seq; ++s)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0, row = rowIndex(layout, heads, seq, b, h, s); d < dim; ++d)
          t.set(row * dim + d, nan);
}

void ServingCall::poisonPadding(HostTensor &q, HostTensor &k, HostTensor &v,
                                Layout layout) const {
  if (!packKV && pageSize == 0 && !lens.empty()) {
    poisonRowsPast(k, lens, layout);
    poisonRowsPast(v, lens, layout);
  }
  if (!packQ && !queries.empty())
    poisonRowsPast(q, queries, layout);
}

void ServingCall::unpack(HostTensor &out, HostTensor &lse, Layout layout) const {
  if (!packQ)
    return;
  unpackSequences(packedOut, queries, layout, out);
  unpackSequences(packedLse, queries, layout, lse);
}

void ServingCall::bind(AttentionArgs &args) {
  if (packQ) {
    args.q = packedQ.ref();
    args.out = packedOut.ref();
    if (args.lse.data)
      args.lse = packedLse.ref();
    args.cuSeqlensQ = cuSeqlensQ.ref();
  } else if (!queries.empty()) {
    args.qLens = qLens.ref();
  }
  if (packKV) {
    args.k = packedK.ref();
    args.v = packedV.ref();
    args.cuSeqlensKV = cuSeqlensKV.ref();
    return;
  }
  if (lens.empty())
    return;
  args.kvLens = kvLens.ref();
  if (pageSize > 0) {
    args.k = kPages.ref();
    args.v = vPages.ref();
    args.pageTable = pageTable.ref();
  }
}

int64_t ServingCall::totalKeys() const {
  return std::accumulate(lens.begin(), lens.end(), int64_t(0));
}

std::string ServingCall::describe() const {
  auto list = [](const std::vector<int64_t> &v) {
    std::string text;
    for (size_t i = 0; i < v.size() && i < 8; ++i)
      text += (i ? "," : "") + std::to_string(v[i]);
    return v.size() > 8 ? text + ",..." : text;
  };
  std::vector<std::string> parts;
  if (!lens.empty())
    parts.push_back(fmt::format("kv_lens {} ({} keys in all)", list(lens), totalKeys()));
  if (pageSize > 0)
    parts.push_back(fmt::format("paged: {} pages of {} keys", kPages.shape()[0], pageSize));
  if (!queries.empty())
    parts.push_back(fmt::format("q_lens {} ({} queries in all)", list(queries),
                                std::accumulate(queries.begin(), queries.end(), int64_t(0))));
  if (packQ || packKV)
    parts.push_back(std::string("packed ") + (packQ ? "queries (cu_seqlens_q)" : "") +
                    (packQ && packKV ? " and " : "") + (packKV ? "keys (cu_seqlens_kv)" : ""));
  return llvm::join(parts, ", ");
}

} // namespace heed::run
