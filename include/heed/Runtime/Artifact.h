// Kernel artifacts: what the compiler produces and the runtime loads, for the
// JIT's disk cache and for ahead-of-time deployment alike.
//
// An artifact holds one or more entries, one per target (the host CPU, an
// x86-64 level, later GPU architectures); each entry is the binary (a shared
// object for the CPU) plus the KernelInfo the runtime needs to check and
// launch it without the compiler. The file starts with a header (magic,
// format version, cache key, body size, SHA-256 of the body), so truncated,
// corrupted and other-version files are detected before anything is loaded.
#ifndef HEED_RUNTIME_ARTIFACT_H
#define HEED_RUNTIME_ARTIFACT_H

#include "heed/Runtime/Sha256.h"
#include "heed/Runtime/Tensor.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace heed {

/// A run-time buffer as the kernel reads it.
struct BufferInfo {
  std::string name;
  DType dtype = DType::F32;
  /// Sizes (B, H, Hkv, Sq, Skv), integers or expressions of them (resolveDims)
  std::vector<std::string> shape;
};

/// How a GPU entry's image is launched. KernelInfo keys gpu_image,
/// gpu_kernel and gpu_launch: a heed of the same kArtifactVersion that
/// predates them ignores them (and never loads a GPU entry, see hostRuns).
struct GPULaunch {
  std::string format;       ///< "cubin", "ptx" (the CUDA driver JIT-compiles it) or "hsaco"
  std::string kernelName;   ///< the entry point
  int64_t blockRows = 0;    ///< query rows per block: grid x = ceil(Sq / blockRows)
  int64_t threads = 0;      ///< threads per block
  int64_t sharedBytes = 0;  ///< dynamic shared memory per block
  bool matrixCores = false; ///< tensor cores (NVIDIA) or MFMA (AMD), else the SIMT kernel
  /// The wgmma kernel (sm_90a): the box rows of the Q and of the K/V tensor
  /// maps (cuTensorMapEncodeTiled), passed by value after the other
  /// parameters; 0 when the kernel takes none.
  int64_t tensorMapRowsQ = 0, tensorMapRowsKV = 0;
  /// The kernel takes split-KV's phase, count and workspace after the work
  /// range (--attn-split-kv{one-loop}; docs/decode.md, "Split-KV on the
  /// GPU"): the runtime runs phase 0 with count 1, or phases 1 and 2.
  bool splitKV = false;
  /// With splitKV: the kernel also takes the keys per part after the
  /// count (parts of equal work; docs/decode.md, "Parts of equal work");
  /// kernels from before it do not.
  bool splitPartKeys = false;
  /// Some work loop of the kernel runs whole in split-KV's phase 1 (a gated
  /// item: the pass's fallback): the runtime runs phase 0 alone (count 1).
  bool splitKVWhole = false;
  /// The kernel packs a GQA group's queries into one tile of this many rows
  /// where group x Sq fits it (--attn-pack-gqa{one-loop}; docs/decode.md,
  /// "GQA packing on the GPU"): the runtime then launches (1, Hkv, B)
  /// blocks. -1: it never packs (and artifacts from before it).
  int64_t packedRows = -1;
  /// Persistent workers (--attn-persistent-workers): the runtime launches
  /// (workers, 1, 1) blocks, the device's resident blocks and at most one
  /// per work item; each walks the items itself.
  bool persistent = false;
  /// Query tiles that are patches of a token grid (docs/passes.md, "Patch
  /// tiling"): the grid's inner extents and the patch's sides (1 to 3,
  /// their product blockRows); empty for flat tiles.
  std::vector<int64_t> queryGrid, queryPatch;
  /// Grid x of a sequence of `seqQ` queries: its query tiles, ceil(Sq /
  /// blockRows) for flat tiles, the patches covering its grid rows else.
  int64_t queryTiles(int64_t seqQ) const;
};

/// Everything the runtime checks and launches a kernel by.
struct KernelInfo {
  std::string name; ///< the variant's name
  DType dtype = DType::F32;
  int64_t headDim = 0, headDimV = 0;
  Layout layout = Layout::BHSD;
  bool lse = false;
  bool kvLens = false;  ///< the call passes kv_lens (i32 [B])
  bool qLens = false;   ///< the call passes q_lens (i32 [B])
  /// Packed sequences (KernelConfig::cuSeqlensQ/KV): the call passes
  /// cu_seqlens_q (cu_seqlens_kv), i32 [B+1], and q, out, lse (k, v) hold
  /// the entries end to end in batch 1.
  bool cuSeqlensQ = false, cuSeqlensKV = false;
  /// The call passes the order to start the batch entries in (i32 [B],
  /// after the other index tensors; the runtime computes it: longest first).
  /// Kernels of entries that may differ in length take it
  /// (KernelConfig::ragged()); entries from before it do not.
  bool entryOrder = false;
  bool outF32 = false;  ///< out is f32 whatever dtype is (KernelConfig::outF32)
  int64_t pageSize = 0; ///< > 0: k and v are a paged cache read through a page table
  /// CPU kernels: the entry takes the split-KV phase, count and workspace
  /// after the work range (docs/decode.md, "Split-KV").
  bool splitKV = false;
  /// CPU kernels with splitKV: the entry also takes the keys per part
  /// after the count (parts of equal work); entries from before it do not.
  bool splitPartKeys = false;
  /// CPU kernels: a GQA group's queries share one tile of this many rows
  /// when group x Sq fits it (--attn-pack-gqa); -1: the kernel never packs
  /// (the pass declined its loop: a mask reading h, routing); 0: not
  /// recorded (entries from before it), the runtime then reads the query
  /// tile's rows.
  int64_t packedRows = 0;
  double scale = 0; ///< the scale compiled in
  std::vector<BufferInfo> buffers;
  std::vector<unsigned> summarized; ///< buffers with a run-time min/max summary
  int64_t summaryBlock = 16;        ///< entries per summary block
  /// Per-token head gating: [buffer, dim of b, dim of q, dim of h], or empty.
  std::vector<int64_t> gate;
  std::optional<GPULaunch> gpu; ///< GPU entries only

  /// Line-oriented text ("key value"), stable across versions of heed that
  /// share kArtifactVersion.
  std::string serialize() const;
  /// Parses serialize()'s output; returns "" or an error text.
  std::string parse(const std::string &text);
};

/// The target an entry runs on: "cpu:<arch>:<cpu name>:<features>" for CPU
/// shared objects, e.g. "cpu:x86_64:x86-64-v3:" or "cpu:x86_64:znver4:+avx512f,...";
/// GPU images are "cuda:<chip>" (a cubin or PTX, e.g. "cuda:sm_90a") and
/// "hip:<chip>" (an HSACO, e.g. "hip:gfx942"), with info.gpu set.
struct ArtifactEntry {
  std::string target;
  KernelInfo info;
  std::string binary;
};

/// Artifact format versions. Version 2 is written only for an artifact with
/// an entry whose arguments a version-1 reader would misread (packed
/// sequences: KernelInfo::cuSeqlensQ/KV add operands an older heed ignores
/// as an unknown key), so that such a reader refuses it rather than
/// launching with the wrong arguments; version 3 likewise for an entry that
/// takes the entry order (KernelInfo::entryOrder), which a version-2 reader
/// would misread; version 4 for a GPU entry that packs GQA groups
/// (GPULaunch::packedRows); version 5 for a GPU entry of persistent workers
/// (GPULaunch::persistent); version 6 for an entry whose split-KV operands
/// include the keys per part (KernelInfo/GPULaunch::splitPartKeys);
/// version 7 for a GPU entry whose query tiles are patches
/// (GPULaunch::queryPatch); every other artifact stays version 1. This heed
/// reads all seven.
inline constexpr uint32_t kArtifactVersion = 1;
inline constexpr uint32_t kArtifactVersionPacked = 2;
inline constexpr uint32_t kArtifactVersionEntryOrder = 3;
/// A GPU entry packs GQA groups (gpu_packed_rows): an older reader would
/// launch Hq blocks on a kernel that takes Hkv items, past the heads.
inline constexpr uint32_t kArtifactVersionGPUPacking = 4;
/// A GPU entry of persistent workers (gpu_persistent): an older reader
/// would launch a block per item, each worker walking all items again.
inline constexpr uint32_t kArtifactVersionPersistent = 5;
/// An entry takes split-KV's keys per part (split_kv / gpu_split_kv's
/// last number): an older reader would pass the workspace in its place.
inline constexpr uint32_t kArtifactVersionSplitParts = 6;
/// A GPU entry tiles queries by patches (gpu_patches): an older reader
/// would launch ceil(Sq / blockRows) blocks, fewer than the patches.
inline constexpr uint32_t kArtifactVersionGPUPatches = 7;
/// The newest version this heed reads.
inline constexpr uint32_t kArtifactVersionNewest = kArtifactVersionGPUPatches;

struct Artifact {
  Digest key{}; ///< the cache key it was built for (all zero for AOT bundles)
  std::vector<ArtifactEntry> entries;

  std::string serialize() const;
  /// Parses and verifies (magic, version, size, checksum). Returns "" or an
  /// error text that says what is wrong.
  std::string parse(const std::string &bytes);
};

/// x86 extensions a CPU entry's target lists when its code may use them
/// ("cpu:x86_64:<cpu>:avx2,fma,..."); hostRuns checks each on this machine.
inline constexpr const char *kCheckedX86Features[] = {
    "sse4.1", "sse4.2",   "popcnt",   "avx",      "avx2",     "fma",
    "bmi",    "bmi2",     "avx512f",  "avx512bw", "avx512dq", "avx512vl",
    "avx512cd", "avx512vnni", "avx512bf16", "avx512vbmi"};

/// Does this machine run `target`? If not, `why` says what it lacks. Never
/// true for a GPU target: the CPU loader opens shared objects only.
bool hostRuns(const std::string &target, std::string &why);

/// "cuda:..." or "hip:...".
bool isGPUTarget(const std::string &target);

/// "" when `entry` is a GPU image for `target` ("cuda:<chip>", "hip:<chip>")
/// that a module loader may be given: the same target, a launch shape, an
/// image of the platform's format (an ELF for the platform's machine with
/// the kernel's symbol, or PTX with its entry). Else what is wrong.
std::string checkGPUEntry(const ArtifactEntry &entry, const std::string &target);

/// The GPU entry of `artifact` a device runs: `platform` is "cuda" or "hip",
/// `chip` the device's ("sm_90" from compute capability 9.0, "gfx942").
/// CUDA, best first: a cubin for that chip (or its arch-specific "a"
/// variant), a cubin of the same major version and a lower minor (binary
/// compatible), then the PTX of the newest chip not newer than the device,
/// which the driver compiles for it (an "a" PTX only for its own chip). HIP:
/// the HSACO of that chip. Null with `why` listing each entry and why it
/// does not fit.
const ArtifactEntry *selectGPUEntry(const Artifact &artifact, const std::string &platform,
                                    const std::string &chip, std::string &why);

} // namespace heed

#endif
