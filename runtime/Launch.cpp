// Loading kernel binaries (shared objects mapped with dlopen from memory) and
// launching them: argument checks against the KernelInfo, memref descriptors,
// run-time buffer summaries, and the work split over a thread pool.
#include "heed/Runtime/Launch.h"

#include "heed/Runtime/BufferSummary.h"
#include "heed/Runtime/GateRows.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fcntl.h>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

namespace heed {

namespace {

using PackedFn = void (*)(void **);
using CountFn = int64_t (*)(int64_t);

/// Symbols every CPU kernel binary defines (see lib/Compiler/Link.cpp).
constexpr const char *kEntrySymbol = "heed_packed_heed_kernel";
constexpr const char *kNumQTilesSymbol = "heed_num_q_tiles";
constexpr const char *kNumKVTilesSymbol = "heed_num_kv_tiles";

/// A fast 64-bit content hash for buffer summaries (not cryptographic: it
/// tells a changed buffer from an unchanged one).
uint64_t contentHash(const void *data, size_t size) {
  const uint64_t p1 = 0x9E3779B185EBCA87ull, p2 = 0xC2B2AE3D27D4EB4Full;
  auto rotl = [](uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  uint64_t lanes[4] = {p1 + p2, p2, 0, 0 - p1};
  auto *p = static_cast<const unsigned char *>(data);
  size_t i = 0;
  for (; i + 32 <= size; i += 32)
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * l, 8);
      lanes[l] = rotl(lanes[l] + w * p2, 31) * p1;
    }
  uint64_t h = rotl(lanes[0], 1) + rotl(lanes[1], 7) + rotl(lanes[2], 12) + rotl(lanes[3], 18);
  h += size;
  for (; i < size; ++i)
    h = rotl(h ^ (p[i] * p1), 11) * p2;
  h ^= h >> 33, h *= p2, h ^= h >> 29, h *= p1, h ^= h >> 32;
  return h;
}

/// A memref descriptor as the C interface expects it:
/// {allocated, aligned, offset, sizes[rank], strides[rank]}.
struct Descriptor {
  std::vector<int64_t> words;
  void *pointer() { return words.data(); }
};

Descriptor describe(const void *data, const std::vector<int64_t> &shape,
                    const std::vector<int64_t> &strides) {
  Descriptor d;
  auto ptr = reinterpret_cast<int64_t>(data);
  d.words = {ptr, ptr, 0};
  d.words.insert(d.words.end(), shape.begin(), shape.end());
  d.words.insert(d.words.end(), strides.begin(), strides.end());
  return d;
}

std::string join(const std::vector<int64_t> &v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i)
    out += (i ? ", " : "") + std::to_string(v[i]);
  return out;
}

/// The lengths in an i32 [B] tensor (kv_lens, q_lens) already checked.
std::vector<int64_t> entryLengths(const TensorRef &t, int64_t batch) {
  std::vector<int64_t> lens;
  int64_t stride = t.effectiveStrides()[0];
  for (int64_t b = 0; b < batch; ++b)
    lens.push_back(static_cast<const int32_t *>(t.data)[b * stride]);
  return lens;
}

/// "" or why `t` is not an i32 tensor of `shape` heed can read.
std::string checkIndexTensor(const std::string &name, const TensorRef &t,
                             const std::vector<int64_t> &shape, const std::string &symbolic) {
  if (t.dtype != DType::I32 || t.shape != shape)
    return name + " must be i32[" + symbolic + "] = i32[" + join(shape) + "], got " +
           t.describe();
  if (std::string err = checkView(name, t); !err.empty())
    return err;
  // The kernel takes the lengths' last dim as contiguous (its argument's
  // innermost stride is 1).
  if (!t.shape.empty() && t.shape.back() > 1 && t.effectiveStrides().back() != 1)
    return name + " must be contiguous in its last dimension, got " + t.describe();
  return "";
}

/// kv_lens and the page table of a serving call (docs/decode.md): shapes,
/// and every length and page the kernel will read in range. On return
/// dims.seqKV is the keys a batch entry can hold (k's length, or max_pages *
/// page size), which is what `Skv` means in buffer shapes.
std::string checkServing(const AttentionArgs &a, const KernelInfo &c, AttentionDims &dims) {
  bool given = a.kvLens.data || !a.kvLens.shape.empty() || a.pageTable.data ||
               !a.pageTable.shape.empty();
  if (!c.kvLens)
    return given ? "kv_lens or a page table was given, but the kernel was compiled without "
                   "them (compile with kv lengths or a page size)"
                 : "";
  if (std::string err = checkIndexTensor("kv_lens", a.kvLens, {dims.batch}, "B"); !err.empty())
    return err;
  int64_t capacity = dims.seqKV;
  int64_t pages = 0;
  if (c.pageSize > 0) {
    if (a.k.shape[c.layout == Layout::BSHD ? 1 : 2] != c.pageSize)
      return "the k cache's page size must be " + std::to_string(c.pageSize) +
             " (the kernel was compiled for it), got " + a.k.describe();
    if (a.pageTable.shape.size() != 2)
      return "page_table must be i32[B, max_pages], got " + a.pageTable.describe();
    if (std::string err = checkIndexTensor("page_table", a.pageTable,
                                           {dims.batch, a.pageTable.shape[1]}, "B, max_pages");
        !err.empty())
      return err;
    pages = a.k.shape[0];
    if (__builtin_mul_overflow(a.pageTable.shape[1], c.pageSize, &capacity) ||
        capacity > kMaxDim)
      return "page_table's max_pages * page size exceeds " + std::to_string(kMaxDim) + " keys";
  }
  std::vector<int64_t> lens = entryLengths(a.kvLens, dims.batch), table;
  if (c.pageSize > 0)
    table = a.pageTable.effectiveStrides();
  for (int64_t b = 0; b < dims.batch; ++b) {
    int64_t len = lens[size_t(b)];
    if (len < 0 || len > capacity)
      return "kv_lens[" + std::to_string(b) + "] = " + std::to_string(len) + " is outside [0, " +
             std::to_string(capacity) + "] (" +
             (c.pageSize > 0 ? "max_pages * page size" : "the keys k holds") + ")";
    if (c.pageSize > 0)
      for (int64_t p = 0; p * c.pageSize < len; ++p) {
        int32_t page = static_cast<const int32_t *>(a.pageTable.data)[b * table[0] + p * table[1]];
        if (page < 0 || page >= pages)
          return "page_table[" + std::to_string(b) + ", " + std::to_string(p) + "] = " +
                 std::to_string(page) + " is not a page of the cache (it has " +
                 std::to_string(pages) + ")";
      }
  }
  dims.seqKV = capacity;
  return "";
}

/// q_lens of a call (docs/decode.md): its shape, and each entry's queries
/// within what q holds (dims.seqQ, a capacity).
std::string checkQLens(const AttentionArgs &a, const KernelInfo &c, const AttentionDims &dims) {
  bool given = a.qLens.data || !a.qLens.shape.empty();
  if (!c.qLens)
    return given ? "q_lens was given, but the kernel was compiled without it (compile with "
                   "query lengths)"
                 : "";
  if (std::string err = checkIndexTensor("q_lens", a.qLens, {dims.batch}, "B"); !err.empty())
    return err;
  std::vector<int64_t> lens = entryLengths(a.qLens, dims.batch);
  for (int64_t b = 0; b < dims.batch; ++b)
    if (lens[size_t(b)] < 0 || lens[size_t(b)] > dims.seqQ)
      return "q_lens[" + std::to_string(b) + "] = " + std::to_string(lens[size_t(b)]) +
             " is outside [0, " + std::to_string(dims.seqQ) + "] (the queries q holds)";
  return "";
}

/// The offsets of packed sequences (cu_seqlens_q or cu_seqlens_kv) over a
/// tensor of `total` rows: i32 [B+1], from >= 0, non-decreasing, at most
/// `total`. Sets `batch` (B) and `longest` (the longest entry).
std::string checkCuSeqlens(const std::string &name, const TensorRef &cu, int64_t total,
                           int64_t &batch, int64_t &longest) {
  if (cu.dtype != DType::I32 || cu.shape.size() != 1 || cu.shape[0] < 1)
    return name + " must be i32[B + 1] (each batch entry's first row, then the end), got " +
           cu.describe();
  if (std::string err = checkView(name, cu); !err.empty())
    return err;
  if (cu.shape[0] > 1 && cu.effectiveStrides()[0] != 1) // the kernel reads it contiguous
    return name + " must be contiguous, got " + cu.describe();
  batch = cu.shape[0] - 1;
  std::vector<int64_t> at = entryLengths(cu, cu.shape[0]);
  longest = 0;
  if (at[0] < 0)
    return name + "[0] = " + std::to_string(at[0]) + " is negative";
  for (int64_t b = 0; b < batch; ++b) {
    if (at[size_t(b + 1)] < at[size_t(b)])
      return name + " must not decrease: " + name + "[" + std::to_string(b + 1) + "] = " +
             std::to_string(at[size_t(b + 1)]) + " < " + name + "[" + std::to_string(b) +
             "] = " + std::to_string(at[size_t(b)]);
    longest = std::max(longest, at[size_t(b + 1)] - at[size_t(b)]);
  }
  if (at.back() > total)
    return name + "[" + std::to_string(batch) + "] = " + std::to_string(at.back()) +
           " is past the " + std::to_string(total) + " rows the packed tensor holds";
  return "";
}

/// Each entry's length from packed offsets (already checked).
std::vector<int64_t> packedLengths(const TensorRef &cu) {
  std::vector<int64_t> at = entryLengths(cu, cu.shape[0]), lens;
  for (size_t b = 0; b + 1 < at.size(); ++b)
    lens.push_back(at[b + 1] - at[b]);
  return lens;
}

/// Packed sequences (cu_seqlens_q / cu_seqlens_kv): the tensors have batch
/// 1 and their offsets are valid; dims.batch becomes B and dims.seqQ
/// (seqKV) the longest entry, the capacity the kernel's grid and `Sq`
/// (`Skv`) in buffer shapes take.
std::string checkPacked(const AttentionArgs &a, const KernelInfo &c, AttentionDims &dims) {
  bool givenQ = a.cuSeqlensQ.data || !a.cuSeqlensQ.shape.empty();
  bool givenKV = a.cuSeqlensKV.data || !a.cuSeqlensKV.shape.empty();
  if (givenQ && !c.cuSeqlensQ)
    return "cu_seqlens_q was given, but the kernel was compiled without it (compile for "
           "packed queries)";
  if (givenKV && !c.cuSeqlensKV)
    return "cu_seqlens_kv was given, but the kernel was compiled without it (compile for "
           "packed keys)";
  unsigned sd = c.layout == Layout::BSHD ? 1 : 2;
  int64_t batch = -1;
  if (c.cuSeqlensQ) {
    if (a.q.shape[0] != 1 || a.out.shape[0] != 1)
      return "packed queries (cu_seqlens_q) take q and out of batch 1, the entries end to end: "
             "q " + a.q.describe() + ", out " + a.out.describe();
    if (std::string err = checkCuSeqlens("cu_seqlens_q", a.cuSeqlensQ, a.q.shape[sd], batch,
                                         dims.seqQ);
        !err.empty())
      return err;
    dims.batch = batch;
  }
  if (c.cuSeqlensKV) {
    if (a.k.shape[0] != 1 || a.v.shape[0] != 1)
      return "packed keys (cu_seqlens_kv) take k and v of batch 1, the entries end to end: k " +
             a.k.describe() + ", v " + a.v.describe();
    int64_t batchKV = -1;
    if (std::string err = checkCuSeqlens("cu_seqlens_kv", a.cuSeqlensKV, a.k.shape[sd], batchKV,
                                         dims.seqKV);
        !err.empty())
      return err;
    if (batch >= 0 && batchKV != batch)
      return "cu_seqlens_q and cu_seqlens_kv must describe the same batch: " +
             a.cuSeqlensQ.describe() + " and " + a.cuSeqlensKV.describe();
    if (batch < 0 && a.q.shape[0] != batchKV)
      return "cu_seqlens_kv describes " + std::to_string(batchKV) + " entries, but q has batch " +
             std::to_string(a.q.shape[0]);
    dims.batch = batchKV;
  } else if (c.cuSeqlensQ && c.pageSize == 0 &&
             (a.k.shape[0] != batch || a.v.shape[0] != batch)) {
    return "cu_seqlens_q describes " + std::to_string(batch) + " entries, but k and v have " +
           "batch " + std::to_string(a.k.shape[0]) + ": k " + a.k.describe() + ", v " +
           a.v.describe();
  }
  return "";
}

/// Checks q, k, v, out, lse against the kernel; fills the logical sizes.
std::string checkTensors(const AttentionArgs &a, const KernelInfo &c, AttentionDims &dims) {
  bool bshd = c.layout == Layout::BSHD;
  std::string layoutName = bshd ? "[B, S, H, D]" : "[B, H, S, D]";
  struct Named {
    const char *name;
    const TensorRef *t;
    int64_t d;
  } all[] = {{"q", &a.q, c.headDim}, {"k", &a.k, c.headDim},
             {"v", &a.v, c.headDimV}, {"out", &a.out, c.headDimV}};
  for (const Named &n : all) {
    std::string name = n.name;
    if (n.t->shape.size() != 4)
      return name + " must have rank 4 " + layoutName + ", got " + n.t->describe();
    DType want = n.t == &a.out && c.outF32 ? DType::F32 : c.dtype;
    if (n.t->dtype != want)
      return name + " must be " + toString(want) + " (the kernel was compiled for it), got " +
             toString(n.t->dtype);
    if (n.t->shape[3] != n.d)
      return name + " must have head dim " + std::to_string(n.d) + ", got " + n.t->describe();
    if (std::string err = checkView(name, *n.t); !err.empty())
      return err;
    if (n.t->effectiveStrides()[3] != 1)
      return name + " must be contiguous in its last (head) dimension";
  }
  if (std::string err = checkWritable("out", a.out); !err.empty())
    return err;
  unsigned hd = bshd ? 2 : 1, sd = bshd ? 1 : 2;
  dims = {a.q.shape[0], a.q.shape[hd], a.k.shape[hd], a.q.shape[sd], a.k.shape[sd]};
  bool paged = c.pageSize > 0;
  bool packed = c.cuSeqlensQ || c.cuSeqlensKV;
  if (!packed && ((!paged && (a.k.shape[0] != dims.batch || a.v.shape[0] != dims.batch)) ||
                  a.out.shape[0] != dims.batch))
    return "batch sizes differ: q " + a.q.describe() + ", k " + a.k.describe() + ", v " +
           a.v.describe() + ", out " + a.out.describe();
  if (packed && a.out.shape[0] != a.q.shape[0])
    return "q and out must have the same batch: q " + a.q.describe() + ", out " +
           a.out.describe();
  if (a.v.shape[hd] != dims.headsKV || a.v.shape[sd] != a.k.shape[sd] ||
      (paged && a.v.shape[0] != a.k.shape[0]))
    return std::string(paged ? "the k and v caches must have the same pages, heads and page size"
                             : "k and v must have the same heads and length") +
           ": k " + a.k.describe() + ", v " + a.v.describe();
  if (std::string err = checkPacked(a, c, dims); !err.empty())
    return err;
  if (std::string err = checkServing(a, c, dims); !err.empty())
    return err;
  if (std::string err = checkQLens(a, c, dims); !err.empty())
    return err;
  if (a.out.shape[hd] != dims.headsQ || a.out.shape[sd] != a.q.shape[sd])
    return "out must have the heads and length of q: q " + a.q.describe() + ", out " +
           a.out.describe();
  if (dims.headsKV == 0 ? dims.headsQ != 0 : dims.headsQ % dims.headsKV != 0)
    return "query heads (" + std::to_string(dims.headsQ) +
           ") must be a multiple of key/value heads (" + std::to_string(dims.headsKV) + ")";
  bool hasLse = !a.lse.shape.empty() || a.lse.data;
  if (c.lse && !hasLse)
    return "the kernel was compiled to write lse, but no lse tensor was given";
  if (!c.lse && hasLse)
    return "an lse tensor was given, but the kernel was compiled without lse";
  if (c.lse) {
    std::vector<int64_t> want = {dims.batch, dims.headsQ, dims.seqQ};
    if (c.cuSeqlensQ) // packed: [1, Hq, total_q]
      want = {1, dims.headsQ, a.q.shape[sd]};
    if (a.lse.dtype != DType::F32 || a.lse.shape != want)
      return "lse must be f32[" + join(want) + "], got " + a.lse.describe();
    if (std::string err = checkView("lse", a.lse); !err.empty())
      return err;
    if (a.lse.effectiveStrides()[2] != 1)
      return "lse must be contiguous in its last dimension";
    if (std::string err = checkWritable("lse", a.lse); !err.empty())
      return err;
  }
  return "";
}

} // namespace

std::string checkBuffers(const std::vector<TensorRef> &buffers, const KernelInfo &info,
                         const AttentionDims &dims) {
  if (buffers.size() != info.buffers.size()) {
    std::string names;
    for (const BufferInfo &b : info.buffers)
      names += (names.empty() ? "" : ", ") + b.name;
    return "variant '" + info.name + "' reads " + std::to_string(info.buffers.size()) +
           " buffer(s) (" + names + "), but " + std::to_string(buffers.size()) + " were given";
  }
  for (size_t i = 0; i < info.buffers.size(); ++i) {
    const BufferInfo &decl = info.buffers[i];
    const TensorRef &t = buffers[i];
    if (t.dtype != decl.dtype)
      return "buffer '" + decl.name + "' must be " + toString(decl.dtype) + ", got " +
             toString(t.dtype);
    std::vector<int64_t> want = resolveDims(decl.shape, dims);
    if (t.shape != want) {
      std::string symbolic;
      for (size_t d = 0; d < decl.shape.size(); ++d)
        symbolic += (d ? ", " : "") + decl.shape[d];
      return "buffer '" + decl.name + "' must have shape [" + symbolic + "] = [" + join(want) +
             "], got " + t.describe();
    }
    if (std::string err = checkView("buffer '" + decl.name + "'", t); !err.empty())
      return err;
    if (!t.isContiguous())
      return "buffer '" + decl.name + "' must be contiguous";
  }
  return "";
}

namespace {

/// The memory a tensor of the call occupies, as addresses [lo, hi).
struct Extent {
  std::string name;
  uintptr_t lo = 0, hi = 0;
};

Extent extentOf(std::string name, const TensorRef &t) {
  ByteRange r;
  checkView(name, t, &r); // already checked: only the range is wanted
  auto base = reinterpret_cast<uintptr_t>(t.data);
  return {std::move(name), base + uintptr_t(r.lo), base + uintptr_t(r.hi)};
}

/// The outputs (out, lse) share no byte with an input or with each other:
/// the kernel writes them while it still reads its inputs, and in an order
/// of its choosing. Extents are compared as address ranges, from each
/// view's lowest to its highest byte (sufficient; it also rejects outputs
/// interleaved with an input between the input's elements).
std::string checkOutputsApart(const AttentionArgs &a, const KernelInfo &info) {
  std::vector<Extent> inputs = {extentOf("q", a.q), extentOf("k", a.k), extentOf("v", a.v)};
  if (info.kvLens)
    inputs.push_back(extentOf("kv_lens", a.kvLens));
  if (info.pageSize > 0)
    inputs.push_back(extentOf("page_table", a.pageTable));
  if (info.qLens)
    inputs.push_back(extentOf("q_lens", a.qLens));
  if (info.cuSeqlensQ)
    inputs.push_back(extentOf("cu_seqlens_q", a.cuSeqlensQ));
  if (info.cuSeqlensKV)
    inputs.push_back(extentOf("cu_seqlens_kv", a.cuSeqlensKV));
  for (size_t i = 0; i < a.buffers.size(); ++i)
    inputs.push_back(extentOf("buffer '" + info.buffers[i].name + "'", a.buffers[i]));
  std::vector<Extent> outputs = {extentOf("out", a.out)};
  if (info.lse)
    outputs.push_back(extentOf("lse", a.lse));
  auto meet = [](const Extent &x, const Extent &y) {
    return x.lo < x.hi && y.lo < y.hi && x.lo < y.hi && y.lo < x.hi;
  };
  for (size_t o = 0; o < outputs.size(); ++o) {
    for (const Extent &in : inputs)
      if (meet(outputs[o], in))
        return outputs[o].name + " overlaps " + in.name +
               " in memory; an output must not share memory with an input (q, k, v, "
               "buffers) or with the other output";
    for (size_t p = o + 1; p < outputs.size(); ++p)
      if (meet(outputs[o], outputs[p]))
        return outputs[o].name + " and " + outputs[p].name +
               " overlap in memory; each output needs memory of its own";
  }
  return "";
}

/// A shared object mapped from memory, and the file it was mapped from.
/// glibc's dlopen returns an already loaded object whose path name matches,
/// so the file (and with it its /proc/self/fd/N or temporary name) stays
/// open until the object is unloaded: no two loaded kernels share a name.
struct MappedObject {
  void *handle = nullptr;
  int fd = -1;
  std::string temporaryPath; ///< removed at unload; empty for memfd

  MappedObject() = default;
  MappedObject(const MappedObject &) = delete;
  MappedObject &operator=(const MappedObject &) = delete;
  ~MappedObject() {
    if (handle)
      dlclose(handle);
    if (fd >= 0)
      ::close(fd);
    if (!temporaryPath.empty())
      ::unlink(temporaryPath.c_str());
  }
};

/// Maps a shared object held in memory: an anonymous memory file where the
/// kernel supports it, else a temporary file. With $HEED_KERNEL_DIR set, a
/// file kept in that directory (heed-kernel-XXXXXX.so), so that a profiler
/// (perf report, perf annotate) can read the kernel's code after the run;
/// where that directory takes no file, a warning and the usual memory file
/// (an environment problem is no reason to call a cached kernel broken).
bool openSharedObject(const std::string &bytes, MappedObject &object, std::string &error) {
  std::string path;
  if (const char *keep = std::getenv("HEED_KERNEL_DIR"); keep && *keep) {
    std::string pattern = std::string(keep) + "/heed-kernel-XXXXXX.so";
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    object.fd = mkostemps(name.data(), 3, O_CLOEXEC);
    if (object.fd >= 0) {
      path = "/proc/self/fd/" + std::to_string(object.fd); // what was written is loaded
    } else {
      static std::once_flag warned;
      std::call_once(warned, [&] {
        std::fprintf(stderr,
                     "heed: warning: HEED_KERNEL_DIR: cannot create %s (%s); kernels are "
                     "loaded from memory\n",
                     name.data(), std::strerror(errno));
      });
    }
  }
#ifdef MFD_CLOEXEC
  if (object.fd < 0) {
    object.fd = memfd_create("heed-kernel", MFD_CLOEXEC);
    if (object.fd >= 0)
      path = "/proc/self/fd/" + std::to_string(object.fd);
  }
#endif
  if (object.fd < 0) {
    const char *tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/heed-kernel-XXXXXX";
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    object.fd = mkostemp(name.data(), O_CLOEXEC);
    if (object.fd < 0) {
      error = std::string("cannot create a file to load the kernel from: ") +
              std::strerror(errno);
      return false;
    }
    path = object.temporaryPath = name.data();
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(object.fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      error = std::string("cannot write the kernel binary for loading: ") + std::strerror(errno);
      return false;
    }
    done += size_t(n);
  }
  object.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!object.handle) {
    const char *why = dlerror();
    error = std::string("cannot load the kernel binary: ") + (why ? why : "unknown error");
    return false;
  }
  return true;
}

/// A fixed set of worker threads fed from one queue.
class ThreadPool {
public:
  explicit ThreadPool(unsigned n) {
    for (unsigned i = 0; i < n; ++i)
      workers.emplace_back([this] { loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    for (std::thread &t : workers)
      t.join();
  }
  void submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      jobs.push_back(std::move(job));
    }
    wake.notify_one();
  }

private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [this] { return stopping || !jobs.empty(); });
        if (stopping && jobs.empty())
          return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job();
    }
  }
  std::vector<std::thread> workers;
  std::deque<std::function<void()>> jobs;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
};

} // namespace

TensorRef kernelView(const AttentionArgs &args, const KernelInfo &info, const AttentionDims &dims,
                     CallTensor which) {
  const TensorRef *tensors[] = {&args.q, &args.k, &args.v, &args.out, &args.lse};
  TensorRef view = *tensors[int(which)];
  bool keys = which == CallTensor::K || which == CallTensor::V;
  if (!(keys ? info.cuSeqlensKV : info.cuSeqlensQ))
    return view;
  unsigned seqDim = which == CallTensor::Lse || info.layout == Layout::BHSD ? 2 : 1;
  view.strides = view.effectiveStrides();
  view.shape[0] = dims.batch, view.strides[0] = 0;
  view.shape[seqDim] = keys ? dims.seqKV : dims.seqQ;
  return view;
}

ServingTensors::ServingTensors(const AttentionArgs &args, const KernelInfo &info,
                               const AttentionDims &dims) {
  if (info.kvLens)
    tensors.push_back(&args.kvLens);
  if (info.pageSize > 0)
    tensors.push_back(&args.pageTable);
  if (info.qLens)
    tensors.push_back(&args.qLens);
  if (info.cuSeqlensQ)
    tensors.push_back(&args.cuSeqlensQ);
  if (info.cuSeqlensKV)
    tensors.push_back(&args.cuSeqlensKV);
  if (info.entryOrder) {
    order = entryOrder(args, info, dims);
    orderTensor = TensorRef{order.data(), DType::I32, {dims.batch}, {}};
    tensors.push_back(&orderTensor);
  }
}

std::vector<int32_t> entryOrder(const AttentionArgs &args, const KernelInfo &info,
                                const AttentionDims &dims) {
  std::vector<int32_t> order(size_t(std::max<int64_t>(dims.batch, 0)));
  for (size_t b = 0; b < order.size(); ++b)
    order[b] = int32_t(b);
  std::vector<int64_t> keys = entryKeyLengths(args, info, dims), queries;
  if (info.qLens)
    queries = entryLengths(args.qLens, dims.batch);
  if (info.cuSeqlensQ)
    queries = packedLengths(args.cuSeqlensQ);
  auto work = [&](int32_t b) -> int64_t {
    if (!queries.empty() && queries[size_t(b)] == 0)
      return 0;
    return keys.empty() ? dims.seqKV : keys[size_t(b)];
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t x, int32_t y) { return work(x) > work(y); });
  return order;
}

std::string checkAttentionArgs(const AttentionArgs &args, const KernelInfo &info,
                               AttentionDims &dims) {
  if (std::string err = checkTensors(args, info, dims); !err.empty())
    return err;
  if (std::string err = checkBuffers(args.buffers, info, dims); !err.empty())
    return err;
  return checkOutputsApart(args, info);
}

unsigned hardwareThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

void runTasks(unsigned tasks, const std::function<void(unsigned)> &fn) {
  if (tasks <= 1) {
    if (tasks == 1)
      fn(0);
    return;
  }
  static ThreadPool pool(hardwareThreads());
  std::mutex mutex;
  std::condition_variable done;
  unsigned remaining = tasks - 1;
  for (unsigned t = 1; t < tasks; ++t)
    pool.submit([&, t] {
      fn(t);
      std::lock_guard<std::mutex> lock(mutex);
      if (--remaining == 0)
        done.notify_one();
    });
  fn(0); // the caller works too
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return remaining == 0; });
}

/// A built buffer summary and what it was built from.
struct SummaryEntry {
  unsigned buffer;
  uint64_t hash;
  int64_t length;
  std::shared_ptr<const std::vector<int64_t>> table;
  int64_t levels, blocks;
};

struct LoadedKernel::Impl {
  std::string target;
  KernelInfo info;
  MappedObject object;
  PackedFn entry = nullptr;
  CountFn numQTiles = nullptr, numKVTiles = nullptr;

  // Summaries are built once per buffer content: keyed by a hash of the
  // bytes, so a changed buffer always gets a new table.
  mutable std::mutex summaryMutex;
  mutable std::vector<SummaryEntry> summaryCache;

  SummaryEntry summarize(unsigned n, const TensorRef &buffer) const;
};

SummaryEntry LoadedKernel::Impl::summarize(unsigned n, const TensorRef &buffer) const {
  int64_t length = buffer.numElements();
  uint64_t hash = contentHash(buffer.data, size_t(length) * dtypeSize(buffer.dtype));
  {
    std::lock_guard<std::mutex> lock(summaryMutex);
    for (const SummaryEntry &e : summaryCache)
      if (e.buffer == n && e.hash == hash && e.length == length)
        return e;
  }
  SummaryTable built = buildSummaryTable(buffer, info.summaryBlock);
  int64_t levels = built.levels, blocks = built.blocks;
  auto table = std::make_shared<std::vector<int64_t>>(std::move(built.data));
  SummaryEntry e{n, hash, length, table, levels, blocks};
  std::lock_guard<std::mutex> lock(summaryMutex);
  if (summaryCache.size() >= 16)
    summaryCache.erase(summaryCache.begin());
  summaryCache.push_back(e);
  return e;
}

LoadedKernel::LoadedKernel(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
LoadedKernel::~LoadedKernel() = default;
const KernelInfo &LoadedKernel::info() const { return impl->info; }
const std::string &LoadedKernel::target() const { return impl->target; }

std::shared_ptr<LoadedKernel> LoadedKernel::load(const Artifact &artifact, std::string &error) {
  std::string reasons;
  for (const ArtifactEntry &e : artifact.entries) {
    std::string why;
    if (hostRuns(e.target, why))
      return load(e, error);
    reasons += "\n  " + e.target + ": " + why;
  }
  error = artifact.entries.empty() ? "the artifact holds no kernel"
                                   : "no kernel in the artifact runs on this machine:" + reasons;
  return nullptr;
}

std::shared_ptr<LoadedKernel> LoadedKernel::load(const ArtifactEntry &entry, std::string &error) {
  std::string why;
  if (!hostRuns(entry.target, why)) {
    error = "the kernel cannot run here: " + why;
    return nullptr;
  }
  auto impl = std::make_unique<Impl>();
  impl->target = entry.target;
  impl->info = entry.info;
  if (!openSharedObject(entry.binary, impl->object, error))
    return nullptr;
  auto symbol = [&](const std::string &name) -> void * {
    void *p = dlsym(impl->object.handle, name.c_str());
    if (!p)
      error = "the kernel binary lacks the symbol '" + name + "'";
    return p;
  };
  impl->entry = reinterpret_cast<PackedFn>(symbol(kEntrySymbol));
  impl->numQTiles = reinterpret_cast<CountFn>(symbol(kNumQTilesSymbol));
  impl->numKVTiles = reinterpret_cast<CountFn>(symbol(kNumKVTilesSymbol));
  if (!impl->entry || !impl->numQTiles || !impl->numKVTiles)
    return nullptr;
  return std::shared_ptr<LoadedKernel>(new LoadedKernel(std::move(impl)));
}

void *LoadedKernel::symbol(const std::string &name) const {
  return dlsym(impl->object.handle, name.c_str());
}

namespace {

/// The split-KV workspace of a call (partial accumulators [S, B, Hq, Sq,
/// Dv] and statistics [S, B, Hq, Sq, 2], f32) and its descriptors; empty
/// (never read) when the call is not split.
struct SplitWorkspace {
  int64_t splits;
  /// Keys per part (splitPartKeys), passed to kernels that take it
  /// (KernelInfo::splitPartKeys).
  int64_t partKeys;
  bool takesPartKeys;
  std::vector<float> acc, stats;
  std::vector<Descriptor> descriptors;

  SplitWorkspace(const KernelInfo &c, const AttentionDims &dims, int64_t splits, int64_t partKeys)
      : splits(splits), partKeys(partKeys), takesPartKeys(c.splitPartKeys) {
    SplitWorkspaceLayout layout(splits, dims, c.headDimV);
    acc.resize(size_t(layout.accElements()));
    stats.resize(size_t(layout.elements() - layout.accElements()));
    auto rowMajor = [](const std::vector<int64_t> &shape) {
      return TensorRef{nullptr, DType::F32, shape, {}}.effectiveStrides();
    };
    descriptors.push_back(describe(acc.data(), layout.acc, rowMajor(layout.acc)));
    descriptors.push_back(describe(stats.data(), layout.stats, rowMajor(layout.stats)));
  }
};

/// What the items of one phase reported: each task's status word and block
/// counts (visited, full, partial).
struct PhaseCounts {
  std::vector<int32_t> statuses;
  std::vector<std::array<int64_t, 3>> blocks;
};

/// Runs items [0, items) of `phase` on up to `threads` tasks, handed out one
/// by one (a causal mask's items differ in cost), in `order` (a permutation
/// of [0, items); empty: in index order). Each task has its own
/// status word, block counts and work range; `workspace` (kernels with the
/// split-KV operands) adds the phase, the split count and the workspace.
PhaseCounts runItems(PackedFn entry, const std::vector<Descriptor> &descs,
                     const SplitWorkspace *workspace, int64_t phase, int64_t items,
                     unsigned threads, const std::vector<int64_t> &order) {
  unsigned numTasks = static_cast<unsigned>(std::min<int64_t>(threads, items));
  std::atomic<int64_t> next{0};
  PhaseCounts out{std::vector<int32_t>(numTasks, 0),
                  std::vector<std::array<int64_t, 3>>(numTasks, {0, 0, 0})};
  runTasks(numTasks, [&](unsigned task) {
    std::vector<Descriptor> local = descs;
    int32_t statusWord = 0;
    Descriptor statusDesc = describe(&statusWord, {1}, {1});
    std::array<int64_t, 3> counts = {0, 0, 0};
    Descriptor statsDesc = describe(counts.data(), {3}, {1});
    std::vector<Descriptor> work = workspace ? workspace->descriptors : std::vector<Descriptor>{};
    std::vector<void *> pointers, workPointers, after;
    for (Descriptor &d : local)
      pointers.push_back(d.pointer());
    pointers.push_back(statusDesc.pointer());
    pointers.push_back(statsDesc.pointer());
    int64_t begin = 0, end = 0, phaseArg = phase, splitsArg = workspace ? workspace->splits : 1;
    int64_t partKeysArg = workspace ? workspace->partKeys : 0;
    for (Descriptor &d : work)
      workPointers.push_back(d.pointer());
    if (workspace) {
      after = {&phaseArg, &splitsArg};
      if (workspace->takesPartKeys)
        after.push_back(&partKeysArg);
      for (void *&p : workPointers)
        after.push_back(&p);
    }
    std::vector<void *> packed = packKernelArgs(pointers, begin, end);
    packed.insert(packed.end(), after.begin(), after.end());
    for (int64_t n; (n = next.fetch_add(1)) < items;) {
      begin = order.empty() ? n : order[size_t(n)];
      end = begin + 1;
      entry(packed.data());
    }
    out.statuses[task] = statusWord;
    out.blocks[task] = counts;
  });
  return out;
}

} // namespace

std::string LoadedKernel::run(const AttentionArgs &args, unsigned threads,
                              RunStats *runStats) const {
  const KernelInfo &c = impl->info;
  AttentionDims dims;
  if (std::string err = checkAttentionArgs(args, c, dims); !err.empty())
    return err;
  int64_t items = dims.batch * dims.headsQ * impl->numQTiles(dims.seqQ);
  if (runStats)
    *runStats = RunStats{};
  if (items == 0)
    return "";

  // Descriptors are shared (read-only) by all threads; each thread has its own
  // status word and work range.
  std::vector<Descriptor> descs;
  auto add = [&](const TensorRef &t) {
    descs.push_back(describe(t.data, t.shape, t.effectiveStrides()));
  };
  // (Packed sequences: kernelView.)
  auto view = [&](CallTensor which) { add(kernelView(args, c, dims, which)); };
  view(CallTensor::Q);
  view(CallTensor::K);
  view(CallTensor::V);
  // (With the entry order, the kernel's item b computes entry order[b],
  // longest first: the threads, taking items in index order, start the
  // longest entries first.)
  ServingTensors serving(args, c, dims);
  for (const TensorRef *t : serving.tensors)
    add(*t);
  for (const TensorRef &b : args.buffers)
    add(b);
  std::vector<SummaryEntry> summaries; // keeps the tables alive during the run
  for (size_t n = 0; n < c.summarized.size(); ++n) {
    summaries.push_back(impl->summarize(unsigned(n), args.buffers[c.summarized[n]]));
    const SummaryEntry &e = summaries.back();
    descs.push_back(describe(e.table->data(), {e.levels, e.blocks, 2}, {e.blocks * 2, 2, 1}));
  }
  // Gated kernels: each head's routed rows, then the others (GateRows.h).
  GateRows gate;
  if (c.gate.size() == 4) {
    gate = buildGateRows(args.buffers[c.gate[0]], c.gate, dims.batch, dims.headsQ, dims.seqQ);
    descs.push_back(describe(gate.rows.data(), {int64_t(gate.rows.size())}, {1}));
    descs.push_back(describe(gate.counts.data(), {int64_t(gate.counts.size())}, {1}));
  }
  view(CallTensor::Out);
  if (c.lse)
    view(CallTensor::Lse);

  unsigned maxThreads = threads ? threads : hardwareThreads();
  // Split-KV: phase 1 computes `splits` key ranges per item into the
  // workspace, phase 2 merges them; phase 0 is the whole item at once.
  std::vector<int64_t> lens = entryKeyLengths(args, c, dims), qLens;
  if (c.qLens)
    qLens = entryLengths(args.qLens, dims.batch);
  if (c.cuSeqlensQ)
    qLens = packedLengths(args.cuSeqlensQ);
  bool raggedQ = c.qLens || c.cuSeqlensQ;
  int64_t partKeys = 0;
  int64_t splits = c.splitKV ? chooseKVSplits(dims, lens, maxThreads, impl->numQTiles,
                                              impl->numKVTiles, raggedQ ? &qLens : nullptr,
                                              c.packedRows, &partKeys)
                             : 1;
  SplitWorkspace workspace(c, dims, splits, partKeys);
  PhaseCounts counts;
  auto runPhase = [&](int64_t phase, int64_t phaseItems, const std::vector<int64_t> &order) {
    return runItems(impl->entry, descs, c.splitKV ? &workspace : nullptr, phase, phaseItems,
                    maxThreads, order);
  };
  // Entries with more key tiles first (their items take longest), where the
  // entries differ (kv_lens, packed keys, ragged queries): the kernel's
  // entry order does it (above), or for a kernel from before it, the order
  // the threads take the items in.
  std::vector<int64_t> entryTiles;
  if ((!lens.empty() || raggedQ) && !c.entryOrder)
    for (int64_t b = 0; b < dims.batch; ++b)
      entryTiles.push_back(raggedQ && qLens[size_t(b)] == 0
                               ? 0
                               : impl->numKVTiles(lens.empty() ? dims.seqKV : lens[size_t(b)]));
  int64_t perEntry = kernelItemsPerEntry(dims, impl->numQTiles, c.packedRows);
  if (splits > 1) {
    counts = runPhase(1, items * splits,
                      longestFirst(items * splits, perEntry * splits, entryTiles));
    PhaseCounts merge = runPhase(2, items, {}); // the merge visits no key tile
    counts.statuses.insert(counts.statuses.end(), merge.statuses.begin(), merge.statuses.end());
  } else {
    counts = runPhase(0, items, longestFirst(items, perEntry, entryTiles));
  }
  if (runStats) {
    runStats->splits = splits;
    runStats->packedGQA = packsGQA(dims, impl->numQTiles, c.packedRows);
    for (const auto &n : counts.blocks) {
      runStats->visitedBlocks += n[0];
      runStats->fullBlocks += n[1];
      runStats->partialBlocks += n[2];
    }
    // Each batch entry's own query tiles and keys.
    for (int64_t b = 0; b < dims.batch; ++b)
      runStats->totalBlocks +=
          dims.headsQ * impl->numQTiles(raggedQ ? qLens[size_t(b)] : dims.seqQ) *
          impl->numKVTiles(lens.empty() ? dims.seqKV : lens[size_t(b)]);
  }
  for (int32_t s : counts.statuses)
    if (s > 0 && static_cast<size_t>(s) <= c.buffers.size()) {
      if (runStats)
        runStats->outOfRangeBuffer = s;
      return "the variant read buffer '" + c.buffers[s - 1].name +
             "' out of range (an index computed by the spec fell outside the buffer's "
             "shape); outputs are not valid";
    }
  return "";
}

bool packsGQA(const AttentionDims &dims, int64_t (*numQTiles)(int64_t), int64_t packedRows) {
  int64_t group = dims.headsKV > 0 ? dims.headsQ / dims.headsKV : 1;
  if (packedRows < 0) // the kernel never packs
    return false;
  if (packedRows == 0 && !numQTiles) // (GPU kernels always say)
    return false;
  return group > 1 && (packedRows > 0 ? group * dims.seqQ <= packedRows
                                      : numQTiles(group * dims.seqQ) == 1);
}

int64_t kernelItemsPerEntry(const AttentionDims &dims, int64_t (*numQTiles)(int64_t),
                            int64_t packedRows) {
  // A packed kernel's grid: Hkv items of one packed tile each (decode); the
  // packed tile count of group x Sq rows is 1 whenever it packs.
  return packsGQA(dims, numQTiles, packedRows) ? dims.headsKV
                                               : dims.headsQ * numQTiles(dims.seqQ);
}

std::vector<int64_t> longestFirst(int64_t items, int64_t perEntry,
                                  const std::vector<int64_t> &entryTiles) {
  int64_t batch = int64_t(entryTiles.size());
  if (batch < 2 || perEntry <= 0 || batch * perEntry > items ||
      std::equal(entryTiles.begin() + 1, entryTiles.end(), entryTiles.begin()))
    return {};
  std::vector<int64_t> entries(static_cast<size_t>(batch)), order;
  for (int64_t b = 0; b < batch; ++b)
    entries[size_t(b)] = b;
  std::stable_sort(entries.begin(), entries.end(), [&](int64_t x, int64_t y) {
    return entryTiles[size_t(x)] > entryTiles[size_t(y)];
  });
  order.reserve(size_t(items));
  for (int64_t b : entries)
    for (int64_t i = 0; i < perEntry; ++i)
      order.push_back(b * perEntry + i);
  for (int64_t i = batch * perEntry; i < items; ++i) // past the kernel's grid: no work
    order.push_back(i);
  return order;
}

namespace {
/// HEED_SPLIT_KV=N: the split the environment forces (0: none).
int64_t forcedKVSplits() {
  if (const char *forced = std::getenv("HEED_SPLIT_KV"); forced && *forced) {
    long n = std::strtol(forced, nullptr, 10);
    if (n >= 1)
      return std::min<long>(n, 256);
  }
  return 0;
}
} // namespace

int64_t chooseKVSplits(const AttentionDims &dims, const std::vector<int64_t> &kvLens,
                       unsigned threads, int64_t (*numQTiles)(int64_t),
                       int64_t (*numKVTiles)(int64_t), const std::vector<int64_t> *qLens,
                       int64_t packedRows, int64_t *partKeys) {
  if (partKeys)
    *partKeys = 0;
  if (dims.batch <= 0 || dims.headsKV <= 0)
    return std::max<int64_t>(1, forcedKVSplits());
  // The items the kernel runs: one per key/value head when --attn-pack-gqa
  // packs the group into one query tile (its condition), else per query
  // head and query tile. (With q_lens the choice is on the capacity, and an
  // entry with no query runs nothing.)
  bool packed = packsGQA(dims, numQTiles, packedRows);
  int64_t total = 0, longest = 0, longestKeys = 0;
  for (int64_t b = 0; b < dims.batch; ++b) {
    int64_t queries = qLens ? (*qLens)[size_t(b)] : dims.seqQ;
    int64_t perEntry = packed ? (queries > 0 ? dims.headsKV : 0)
                              : dims.headsQ * numQTiles(queries);
    int64_t keys = kvLens.empty() ? dims.seqKV : kvLens[size_t(b)];
    int64_t tiles = numKVTiles(keys);
    total += tiles * perEntry;
    if (perEntry > 0) { // an entry with no queries runs no key tile
      longest = std::max(longest, tiles);
      longestKeys = std::max(longestKeys, keys);
    }
  }
  int64_t splits = forcedKVSplits();
  if (!splits) {
    // About four parts per thread, none under 8 key tiles (the merge reads
    // each part's state once per row: it must stay small beside the part).
    int64_t chunk = std::max<int64_t>(8, total / (4 * int64_t(std::max(1u, threads))));
    splits = std::max<int64_t>(1, std::min<int64_t>(32, (longest + chunk - 1) / chunk));
  }
  if (partKeys)
    *partKeys = splitPartKeys(longestKeys, splits);
  return splits;
}

int64_t splitPartKeys(int64_t longestKeys, int64_t splits) {
  if (const char *parts = std::getenv("HEED_SPLIT_KV_PARTS"); parts && std::strcmp(parts, "even") == 0)
    return 0;
  return splits > 1 && longestKeys > 0 ? (longestKeys + splits - 1) / splits : 0;
}

int64_t chooseGPUKVSplits(int64_t blocks, int64_t longestKeys, int64_t residentBlocks) {
  if (int64_t forced = forcedKVSplits())
    return forced;
  if (residentBlocks <= 0 || blocks <= 0 || blocks * 5 >= residentBlocks * 4)
    return 1;
  // Parts of at least 256 keys: the merge reads each part's state once
  // per row, which must stay small beside the part's keys.
  constexpr int64_t kMinPartKeys = 256, kMaxSplits = 64;
  int64_t most = std::clamp<int64_t>(longestKeys / kMinPartKeys, 1, kMaxSplits);
  auto efficiency = [&](int64_t s) {
    double waves = double(blocks * s) / double(residentBlocks);
    return waves / std::ceil(waves);
  };
  double best = 0;
  for (int64_t s = 1; s <= most; ++s)
    best = std::max(best, efficiency(s));
  for (int64_t s = 1; s <= most; ++s)
    if (efficiency(s) >= 0.85 * best)
      return s;
  return 1;
}

SplitWorkspaceLayout::SplitWorkspaceLayout(int64_t splits, const AttentionDims &dims,
                                           int64_t valueDim)
    : acc{splits, dims.batch, dims.headsQ, dims.seqQ, valueDim},
      stats{splits, dims.batch, dims.headsQ, dims.seqQ, 2} {
  if (splits <= 1)
    acc.assign(5, 0), stats.assign(5, 0);
}

int64_t SplitWorkspaceLayout::accElements() const {
  int64_t n = 1;
  for (int64_t d : acc)
    n *= d;
  return n;
}

int64_t SplitWorkspaceLayout::elements() const {
  int64_t n = 1;
  for (int64_t d : stats)
    n *= d;
  return accElements() + n;
}

std::vector<int64_t> entryKeyLengths(const AttentionArgs &args, const KernelInfo &info,
                                     const AttentionDims &dims) {
  if (info.cuSeqlensKV)
    return packedLengths(args.cuSeqlensKV);
  if (info.kvLens)
    return entryLengths(args.kvLens, dims.batch);
  return {};
}

std::vector<int64_t> entryQueryLengths(const AttentionArgs &args, const KernelInfo &info,
                                       const AttentionDims &dims) {
  if (info.cuSeqlensQ)
    return packedLengths(args.cuSeqlensQ);
  if (info.qLens)
    return entryLengths(args.qLens, dims.batch);
  return {};
}

int64_t longestKeys(const AttentionArgs &args, const KernelInfo &info,
                    const AttentionDims &dims) {
  std::vector<int64_t> lens = entryKeyLengths(args, info, dims), queries;
  // (An entry with no query this call runs no key tile: as chooseKVSplits.)
  if (info.qLens && args.qLens.data)
    queries = entryLengths(args.qLens, dims.batch);
  if (info.cuSeqlensQ && args.cuSeqlensQ.data)
    queries = packedLengths(args.cuSeqlensQ);
  int64_t longest = lens.empty() ? dims.seqKV : 0;
  for (size_t b = 0; b < lens.size(); ++b)
    if (queries.empty() || (b < queries.size() && queries[b] > 0))
      longest = std::max(longest, std::min(lens[b], dims.seqKV));
  return longest;
}

std::vector<void *> packKernelArgs(std::vector<void *> &descriptors, int64_t &begin,
                                   int64_t &end) {
  std::vector<void *> packed;
  for (void *&p : descriptors)
    packed.push_back(&p);
  packed.push_back(&begin);
  packed.push_back(&end);
  return packed;
}

} // namespace heed
