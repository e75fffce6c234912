// heed-run --kv-lens / --page-size / --q-lens / --packed: a serving call
// (docs/decode.md) built from contiguous random keys: each batch entry's key
// length, the keys and values scattered into a paged cache in a random page
// order or packed end to end, and each entry's number of queries.
#ifndef HEED_TOOLS_HEED_RUN_SERVING_H
#define HEED_TOOLS_HEED_RUN_SERVING_H

#include "heed/Runtime/Launch.h"
#include "heed/Runtime/Tensor.h"

#include <random>
#include <string>
#include <vector>

namespace heed::run {

/// The keys an entry can hold when --seq-kv is not given: the longest of
/// `lensSpec`'s lengths (MAX for random:MIN:MAX), else `fallback`.
int64_t defaultCapacity(const std::string &lensSpec, int64_t fallback);

struct ServingCall {
  std::vector<int64_t> lens; ///< keys per batch entry
  HostTensor kvLens;         ///< i32 [B]
  HostTensor pageTable, kPages, vPages; ///< with a page size only
  int64_t pageSize = 0;
  std::vector<int64_t> queries; ///< queries per batch entry (with --q-lens)
  HostTensor qLens;             ///< i32 [B] (with --q-lens)

  /// The pages of an entry's table row for `capacity` keys (whole pages).
  static int64_t pagesPerEntry(int64_t capacity, int64_t pageSize) {
    return (capacity + pageSize - 1) / pageSize;
  }
  /// Parses `lensSpec` ("" = every entry `capacity` keys; "L" for every
  /// entry; "L0,L1,..." one per entry; "random:MIN:MAX" drawn from `rng`),
  /// each length in [0, capacity]; with pageSize > 0 scatters k and v
  /// ([B, Hkv, capacity, D] in `layout`) into pages. "" or what is wrong.
  std::string prepare(const std::string &lensSpec, int64_t pageSize, int64_t batch,
                      int64_t capacity, const HostTensor &k, const HostTensor &v, Layout layout,
                      std::mt19937_64 &rng);
  /// Parses --q-lens (the syntax of prepare's, each length in [0, capacity]).
  std::string prepareQueries(const std::string &lensSpec, int64_t batch, int64_t capacity,
                             std::mt19937_64 &rng);
  /// --packed (FlashAttention's varlen layout): the queries end to end with
  /// cu_seqlens_q in place of q_lens, and the keys with cu_seqlens_kv in
  /// place of kv_lens where packKV (not with a paged cache).
  bool packQ = false, packKV = false;
  HostTensor cuSeqlensQ, cuSeqlensKV, packedQ, packedK, packedV, packedOut, packedLse;
  /// Packs the padded q (and k, v) of the call's entries; the packed out
  /// and lse start as NaN.
  void pack(const HostTensor &q, const HostTensor &k, const HostTensor &v, const HostTensor &out,
            const HostTensor &lse, Layout layout);
  /// Rows past each entry's length in the padded tensors the kernel reads
  /// (k and v past kv_lens, q past q_lens) set to NaN: a serving cache's
  /// unused rows hold anything, and no kernel may let them into a result.
  void poisonPadding(HostTensor &q, HostTensor &k, HostTensor &v, Layout layout) const;
  /// Rows past kept[b] of each entry b of a padded [B, S, H, D] (BSHD) or
  /// [B, H, S, D] tensor set to NaN.
  static void poisonRowsPast(HostTensor &t, const std::vector<int64_t> &kept, Layout layout);
  /// The packed outputs' rows into the padded out and lse.
  void unpack(HostTensor &out, HostTensor &lse, Layout layout) const;
  /// Points `args` at the lengths and, when paged, the pages and table.
  void bind(AttentionArgs &args);
  /// The (query, key) pairs of the call: each entry's queries (`seqQ`
  /// without --q-lens) times its keys (`seqKV` without --kv-lens).
  double pairs(int64_t heads, int64_t seqQ, int64_t seqKV) const;
  /// Keys all entries hold together (the K/V bytes a kernel must read once).
  int64_t totalKeys() const;
  /// "kv_lens ..., paged: N pages of P keys, q_lens ..." for the report
  std::string describe() const;
};

} // namespace heed::run

#endif
