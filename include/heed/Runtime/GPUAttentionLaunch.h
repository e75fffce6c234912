// Launching a heed GPU attention kernel, the part the CUDA and HIP runtimes
// share: the tensor checks, the status and stats words, the buffer summaries
// the block classifier reads and a gated kernel's routed rows, the kernel arguments (each memref as its
// descriptor expanded into scalars: allocated and aligned pointers, offset,
// sizes, strides, MLIR's default GPU calling convention, then the two index
// arguments of the work range), the launch, and the out-of-range report.
//
// Everything a launch does goes on the caller's stream. Nothing is allocated
// and nothing waits in the steady state: the words the kernel writes, a
// page-locked copy of its status and an event live in a GPUStreamState per
// (device, stream), made at the first launch there and reused. The kernel's
// own error (a buffer read out of range) is reported after the fact, by the
// next launch on that stream that finds the earlier work finished, or by
// checkGPUStream; a synchronous launch waits and reports it at once. Each
// runtime supplies its driver's calls (GPUStreamDriver). See
// docs/runtime.md ("GPU launches").
#ifndef HEED_RUNTIME_GPUATTENTIONLAUNCH_H
#define HEED_RUNTIME_GPUATTENTIONLAUNCH_H

#include "heed/Runtime/Artifact.h"
#include "heed/Runtime/Launch.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace heed {

/// What a forward launch chose for the call (heed-run prints it).
struct GPULaunchChoice {
  int64_t splits = 1;     ///< split-KV's key ranges per work item (1: not split)
  bool packedGQA = false; ///< a GQA group's query heads in one block's tile
};

struct GPULaunchOptions {
  /// Wait for the kernel and report its error in this call (heed-run, and
  /// every C API launch when HEED_GPU_SYNC=1). Otherwise the call returns
  /// once the work is queued on the stream.
  bool synchronous = false;
  /// The options the C API launches with: synchronous iff $HEED_GPU_SYNC is
  /// set to something other than "" or "0".
  static GPULaunchOptions fromEnvironment();
};

/// One GPU driver API (CUDA or HIP) bound to one device and the caller's
/// stream. Each call returns "" or the driver's error.
class GPUStreamDriver {
public:
  virtual ~GPUStreamDriver() = default;
  // What a stream's state is made of (once per device and stream).
  virtual std::string allocate(size_t bytes, void **device) = 0;
  virtual void free(void *device) = 0;
  virtual std::string allocateHost(size_t bytes, void **host) = 0; ///< page-locked
  virtual void freeHost(void *host) = 0;
  virtual std::string createEvent(void **event) = 0;
  // Ordered on the caller's stream.
  virtual std::string zeroAsync(void *device, size_t words32) = 0;
  virtual std::string uploadAsync(void *device, const void *host, size_t bytes) = 0;
  virtual std::string downloadAsync(void *host, const void *device, size_t bytes) = 0;
  virtual std::string recordEvent(void *event) = 0;
  /// The kernel, grid (x, y, z), with these parameters.
  virtual std::string launch(unsigned x, unsigned y, unsigned z, void **params) = 0;
  /// Whether the kernel's module holds another kernel `name` (a buffer
  /// summary's, heed_summary_<n>: images from before them do not).
  virtual bool hasKernel(const std::string &name) {
    (void)name;
    return false;
  }
  /// That kernel on `blocks` blocks of `threads` threads (no dynamic shared
  /// memory), with these parameters.
  virtual std::string launchKernel(const std::string &name, unsigned blocks, unsigned threads,
                                   void **params) {
    (void)blocks, (void)threads, (void)params;
    return "this GPU module has no kernel '" + name + "'";
  }
  /// Waits for everything queued on the caller's stream.
  virtual std::string synchronize() = 0;
  /// Whether the work before the event's last record has finished; never waits.
  virtual std::string queryEvent(void *event, bool &done) = 0;
  /// Whether the caller's stream is being captured into a graph (a runtime
  /// without the query: never).
  virtual std::string capturing(bool &active) {
    active = false;
    return "";
  }
  /// A blocking copy out of device memory (the buffers a summary is built
  /// from, once the stream has been synchronized).
  virtual std::string download(void *host, const void *device, size_t bytes) = 0;
  /// What this kernel needs of the tensors beyond checkAttentionArgs.
  virtual std::string checkTensors(const AttentionArgs &) { return ""; }
  /// How many blocks of the kernel the device runs at once
  /// (multiprocessors times the blocks one holds); 0 when unknown. Split-KV
  /// is chosen from it (chooseGPUKVSplits).
  virtual int64_t residentBlocks() { return 0; }
  /// The wgmma kernel's tensor map (128 bytes at `map`) of a [B, H, S, D]
  /// or [B, S, H, D] f16/bf16 tensor: boxes of 64 columns (128 bytes,
  /// 128B-swizzled) by `rows` sequence rows, zeros outside the tensor.
  virtual std::string encodeTensorMap(void *map, const TensorRef &, Layout, int64_t rows) {
    (void)map, (void)rows;
    return "this GPU platform has no tensor maps (the wgmma kernel is CUDA's)";
  }
};

/// What heed keeps per (device, stream), made at the first launch there.
struct GPUStreamState {
  std::mutex mutex;     ///< one launch at a time per stream
  bool ready = false;   ///< made (below)
  void *words = nullptr; ///< device: status (i32 at 0) and stats (3 x i64 at 8)
  int32_t *hostStatus = nullptr; ///< page-locked copy of the status, written by the stream
  void *event = nullptr; ///< recorded after that copy
  bool pending = false;  ///< launches not yet seen finished
  /// Variants launched since the status was last read: an error names them.
  std::vector<std::pair<std::string, std::vector<std::string>>> launched;
  /// Device memory for the tables built on the host (buffer summaries, a
  /// gated kernel's routed rows), grown on demand.
  void *summaries = nullptr;
  size_t summaryBytes = 0;
  /// Device memory for a serving call's index tensors (kv_lens, q_lens,
  /// cu_seqlens, page_table), uploaded from the host on the stream at each
  /// launch.
  void *tables = nullptr;
  size_t tableBytes = 0;
  /// Device memory for split-KV's partial states (f32 accumulators [S, B,
  /// Hq, Sq, Dv] then statistics [S, B, Hq, Sq, 2]), grown on demand.
  void *splitWorkspace = nullptr;
  size_t splitWorkspaceBytes = 0;
  /// Device memory for the backward's buffer-gradient accumulators (8 i64
  /// words per gradient element, docs/backward.md), grown on demand.
  void *gradWorkspace = nullptr;
  size_t gradWorkspaceBytes = 0;
  /// Page-locked staging for those uploads, a ring of slots (a copy from
  /// pageable memory would wait for the stream): slot i is reused once its
  /// event says its copy is done (else the launch waits for the stream).
  /// A slot is made at kTableSlotBytes and grown (to a power of two) the
  /// first time a call's tables do not fit it (a page table of B=64 entries
  /// of 32K keys in pages of 16 is 512 KB).
  static constexpr int kTableSlots = 4;
  static constexpr size_t kTableSlotBytes = 256 * 1024;
  void *tableStaging[kTableSlots] = {};
  size_t tableSlotBytes[kTableSlots] = {};
  void *tableEvents[kTableSlots] = {};
  bool tableCopying[kTableSlots] = {};
  int nextTableSlot = 0;
};

/// The states of one runtime, by device and stream (and host thread for
/// the per-thread default stream, handle 2); never freed (a stream handle
/// may come back). Thread-safe.
class GPUStreamStates {
public:
  GPUStreamState &get(int device, void *stream);

private:
  std::mutex mutex;
  std::map<std::tuple<int, void *, std::thread::id>, std::unique_ptr<GPUStreamState>> states;
};

/// "" unless `driver`'s stream is being captured into a CUDA/HIP graph
/// (GPUStreamDriver::capturing): then why heed refuses the call. Every entry
/// point that issues work on a caller's stream asks it first (launches, the
/// C API's backward and module loads, heed_synchronize), so that a refusal
/// leaves the caller's capture valid.
std::string refuseGraphCapture(GPUStreamDriver &driver);

/// Checks the tensors against `info`, reports an error an earlier launch on
/// this stream recorded (then launches nothing), and queues the kernel on a
/// grid of (ceil(Sq / launch.blockRows), Hq, B) blocks of launch.threads.
/// A kernel with split-KV's operands (launch.splitKV) runs phase 0 with
/// count 1, or, when chooseGPUKVSplits (or HEED_SPLIT_KV) cuts the key
/// ranges into S > 1 parts, phase 1 on (S ceil(Sq / blockRows), Hq, B)
/// blocks then phase 2 on the usual grid, both on the stream. A kernel
/// that packs GQA groups (launch.packedRows) runs (1, Hkv, B) blocks where
/// group x Sq fits its tile. `choice` (if given) receives what the launch
/// chose. "" or an error.
std::string launchGPUAttention(const KernelInfo &info, const AttentionArgs &args,
                               const GPULaunch &launch, GPUStreamDriver &driver,
                               GPUStreamState &state, const GPULaunchOptions &options,
                               GPULaunchChoice *choice = nullptr);

/// The device tensors of one GPU backward call (docs/backward.md, "GPU
/// kernels"): the forward's q, k, v, buffers, out and lse [B, Hq, Sq] (f32);
/// dout shaped like out; dq, dk, dv written, shaped like q, k, v, in the
/// kernels' dtype; `delta`: f32 [B, Hq, Sq] scratch the dQ kernel writes
/// and the dK/dV kernel reads; bufferGrads: contiguous f32 tensors shaped
/// like the buffers `gradients` lists (zeroed here, then added into).
struct GPUBackwardTensors {
  AttentionArgs forward; ///< q, k, v, out, lse, buffers
  TensorRef dout, dq, dk, dv, delta;
  std::vector<TensorRef> bufferGrads;
};

/// The backward on the caller's stream, checked like launchGPUAttention:
/// the buffers' gradients zeroed, the dQ kernel on a grid of
/// (ceil(Sq / dq.blockRows), Hq, B) blocks, then the dK/dV kernel on
/// (ceil(Skv / dkdv.blockRows), Hkv, B). Each driver is bound to its
/// kernel. `info`: the forward's description (with lse); `gradients`: the
/// buffers whose gradients the kernels add, in order.
std::string launchGPUBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                              const std::vector<unsigned> &gradients, const GPULaunch &dq,
                              GPUStreamDriver &dqDriver, const GPULaunch &dkdv,
                              GPUStreamDriver &dkdvDriver, GPUStreamState &state,
                              const GPULaunchOptions &options);

/// Waits for the stream and reports the error a launch on it recorded since
/// the last report ("" when none).
std::string checkGPUStream(GPUStreamDriver &driver, GPUStreamState &state);

/// A memref descriptor as a kernel parameter list takes it (MLIR's
/// lowering: allocated and aligned pointers, offset 0, the sizes, the
/// strides), appended to `words`: every GPU launch's arguments are these.
void appendMemref(std::vector<int64_t> &words, const void *data,
                  const std::vector<int64_t> &shape, const std::vector<int64_t> &strides);

} // namespace heed

#endif
