// See GPUAttentionLaunch.h.
#include "heed/Runtime/GPUAttentionLaunch.h"

#include "heed/Runtime/BufferSummary.h"
#include "heed/Runtime/GateRows.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

namespace heed {

void appendMemref(std::vector<int64_t> &words, const void *data,
                  const std::vector<int64_t> &shape, const std::vector<int64_t> &strides) {
  auto p = reinterpret_cast<int64_t>(data);
  words.insert(words.end(), {p, p, 0});
  words.insert(words.end(), shape.begin(), shape.end());
  words.insert(words.end(), strides.begin(), strides.end());
}

namespace {

/// Buffer `which` copied out of device memory (every element its strides
/// reach), as a host tensor whose data lives in `host`; "" or the error.
std::string downloadBuffer(const KernelInfo &info, const AttentionArgs &args, unsigned which,
                           GPUStreamDriver &driver, std::vector<char> &host, TensorRef &copy,
                           const char *purpose) {
  const TensorRef &device = args.buffers[which];
  std::vector<int64_t> strides = device.effectiveStrides();
  int64_t last = 0;
  for (size_t d = 0; d < device.shape.size(); ++d)
    last += (device.shape[d] - 1) * strides[d];
  size_t bytes = size_t(device.numElements() > 0 ? last + 1 : 0) * dtypeSize(device.dtype);
  host.assign(std::max<size_t>(bytes, 1), 0);
  if (bytes)
    if (std::string err = driver.download(host.data(), device.data, bytes); !err.empty())
      return "reading buffer '" + info.buffers[which].name + "' for its " + purpose + ": " + err;
  copy = device;
  copy.data = host.data();
  return "";
}

/// A summary table in device memory.
struct DeviceSummary {
  const void *data = nullptr;
  int64_t levels = 1, blocks = 1;
};

/// A gated kernel's routed-row lists in device memory (GateRows.h).
struct DeviceGateRows {
  const void *rows = nullptr, *counts = nullptr;
  int64_t rowCount = 0, countCount = 0;
};

/// A CUtensorMap's bytes, as the driver encodes them.
struct alignas(64) TensorMapBytes {
  unsigned char bytes[128];
};

/// Split-KV's run-time operands of a kernel that takes them: the phase,
/// the parts per item and the workspace (null and empty in phase 0).
struct SplitArgs {
  int64_t phase = 0, count = 1;
  /// Keys per part (splitPartKeys), for kernels that take it
  /// (GPULaunch::splitPartKeys).
  int64_t partKeys = 0;
  bool takesPartKeys = false;
  void *workspace = nullptr;
  SplitWorkspaceLayout layout;
};

/// The kernel's arguments, a pointer per scalar as the driver APIs take them:
/// q, k, v, the buffers, the summaries, the gate rows and counts of a gated
/// kernel, out, lse if written, the status word (i32) and the stats (3 x
/// i64), the work range, split-KV's phase, count[, keys per part] and
/// workspace (kernels with launch.splitKV).
class GPUKernelArgs {
public:
  /// `serving`: the call's index tensors in device memory (kv_lens,
  /// page_table, q_lens, cu_seqlens_q/kv, the entry order: ServingTensors'
  /// order), after v. `maps`: the wgmma
  /// kernel's tensor maps, passed by value after the rest.
  GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args, const AttentionDims &dims,
                const std::vector<TensorRef> &serving,
                const std::vector<DeviceSummary> &summaries, const DeviceGateRows &gate,
                void *status, void *stats, const SplitArgs *split,
                std::vector<TensorMapBytes> &maps);
  GPUKernelArgs(const GPUKernelArgs &) = delete;
  GPUKernelArgs &operator=(const GPUKernelArgs &) = delete;
  void **params() { return pointers.data(); }
  /// Split-KV's phase word, changed between the launches of one call (the
  /// driver copies the parameters at each launch).
  void setPhase(int64_t phase) { words[phaseWord] = phase; }

private:
  std::vector<int64_t> words;
  std::vector<void *> pointers;
  size_t phaseWord = 0;
};

GPUKernelArgs::GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args,
                             const AttentionDims &dims, const std::vector<TensorRef> &serving,
                             const std::vector<DeviceSummary> &summaries,
                             const DeviceGateRows &gate, void *status, void *stats,
                             const SplitArgs *split, std::vector<TensorMapBytes> &maps) {
  auto memref = [&](const void *data, const std::vector<int64_t> &shape,
                    const std::vector<int64_t> &strides) {
    appendMemref(words, data, shape, strides);
  };
  auto tensor = [&](const TensorRef &t) { memref(t.data, t.shape, t.effectiveStrides()); };
  auto view = [&](CallTensor which) { tensor(kernelView(args, info, dims, which)); };
  view(CallTensor::Q);
  view(CallTensor::K);
  view(CallTensor::V);
  for (const TensorRef &t : serving)
    tensor(t);
  for (const TensorRef &b : args.buffers)
    tensor(b);
  for (size_t n = 0; n < info.summarized.size(); ++n) {
    DeviceSummary t = n < summaries.size() ? summaries[n] : DeviceSummary{};
    memref(t.data, {t.levels, t.blocks, 2}, {t.blocks * 2, 2, 1});
  }
  if (!info.gate.empty()) {
    memref(gate.rows, {gate.rowCount}, {1});
    memref(gate.counts, {gate.countCount}, {1});
  }
  view(CallTensor::Out);
  if (info.lse)
    view(CallTensor::Lse);
  memref(status, {1}, {1});
  memref(stats, {3}, {1});
  words.push_back(0);
  words.push_back(0);
  if (split) {
    phaseWord = words.size();
    words.push_back(split->phase);
    words.push_back(split->count);
    if (split->takesPartKeys)
      words.push_back(split->partKeys);
    auto rowMajor = [](const std::vector<int64_t> &shape) {
      return TensorRef{nullptr, DType::F32, shape, {}}.effectiveStrides();
    };
    const SplitWorkspaceLayout &l = split->layout;
    memref(split->workspace, l.acc, rowMajor(l.acc));
    memref(split->workspace ? static_cast<float *>(split->workspace) + l.accElements() : nullptr,
           l.stats, rowMajor(l.stats));
  }
  for (int64_t &w : words)
    pointers.push_back(&w);
  for (TensorMapBytes &m : maps)
    pointers.push_back(m.bytes);
}

} // namespace

GPULaunchOptions GPULaunchOptions::fromEnvironment() {
  GPULaunchOptions options;
  const char *sync = std::getenv("HEED_GPU_SYNC");
  options.synchronous = sync && *sync && std::string(sync) != "0";
  return options;
}

GPUStreamState &GPUStreamStates::get(int device, void *stream) {
  // CU_STREAM_PER_THREAD and hipStreamPerThread (handle 2) name each host
  // thread's own default stream: one state per thread, or two threads'
  // launches would share a workspace across two streams.
  constexpr uintptr_t kPerThreadStream = 2;
  std::thread::id thread = reinterpret_cast<uintptr_t>(stream) == kPerThreadStream
                               ? std::this_thread::get_id()
                               : std::thread::id();
  std::lock_guard<std::mutex> lock(mutex);
  auto &state = states[{device, stream, thread}];
  if (!state)
    state = std::make_unique<GPUStreamState>();
  return *state;
}

namespace {

constexpr size_t kWordBytes = 32; ///< status i32 at 0, stats 3 x i64 at 8
/// The most device memory a call's split-KV workspace may take.
constexpr int64_t kMaxSplitWorkspace = int64_t(512) << 20;
constexpr size_t kRememberedVariants = 8;

/// Makes `state` at the first launch on its stream: the kernel's words
/// zeroed on the stream, their page-locked status copy, the event.
std::string prepare(GPUStreamDriver &driver, GPUStreamState &state) {
  if (state.ready)
    return "";
  std::string error;
  if (!state.words && !(error = driver.allocate(kWordBytes, &state.words)).empty())
    return error;
  if (!state.hostStatus) {
    void *host = nullptr;
    if (!(error = driver.allocateHost(sizeof(int32_t), &host)).empty())
      return error;
    state.hostStatus = static_cast<int32_t *>(host);
    *state.hostStatus = 0;
  }
  if (!state.event && !(error = driver.createEvent(&state.event)).empty())
    return error;
  if (!(error = driver.zeroAsync(state.words, kWordBytes / 4)).empty())
    return error;
  state.ready = true;
  return "";
}

/// What a nonzero status means, for the variants launched since the last
/// read (the status holds a 1-based buffer index).
std::string statusMessage(const GPUStreamState &state, int32_t status, bool thisLaunch) {
  auto names = [&](const std::pair<std::string, std::vector<std::string>> &v) {
    if (status > 0 && size_t(status) <= v.second.size())
      return "variant '" + v.first + "' read buffer '" + v.second[status - 1] + "'";
    return "variant '" + v.first + "' read its buffer #" + std::to_string(status);
  };
  std::string who;
  for (size_t i = 0; i < state.launched.size(); ++i)
    who += (i ? ", or " : "") + names(state.launched[i]);
  if (who.empty())
    who = "a kernel read its buffer #" + std::to_string(status);
  std::string message = who +
                        " out of range (an index computed by the spec fell outside the "
                        "buffer's shape); ";
  return message + (thisLaunch ? "outputs are not valid"
                               : "the outputs of that earlier launch on this stream are not "
                                 "valid, and this call launched nothing");
}

/// Reads the status the stream last copied back, if the work before the
/// event has finished (or after a wait): "" or the error, which is then
/// cleared on the stream.
std::string collect(GPUStreamDriver &driver, GPUStreamState &state, bool waited,
                    bool thisLaunch) {
  if (!state.pending)
    return "";
  if (!waited) {
    bool done = false;
    if (std::string error = driver.queryEvent(state.event, done); !error.empty())
      return error;
    if (!done)
      return "";
  }
  state.pending = false;
  int32_t status = *state.hostStatus;
  std::string message;
  if (status != 0) {
    message = statusMessage(state, status, thisLaunch);
    *state.hostStatus = 0;
    if (std::string error = driver.zeroAsync(state.words, 1); !error.empty())
      return message + "; clearing the status word: " + error;
  }
  state.launched.clear();
  return message;
}

/// Device memory `memory` of `bytes` grown to at least `need` (freed and
/// allocated anew: nothing queued may still use it).
std::string reserveDevice(GPUStreamDriver &driver, void *&memory, size_t &bytes, size_t need) {
  if (need <= bytes)
    return "";
  if (memory)
    driver.free(memory);
  memory = nullptr;
  bytes = 0;
  if (std::string error = driver.allocate(need, &memory); !error.empty())
    return error;
  bytes = need;
  return "";
}

/// Buffer `which`'s summary table at `table` (device memory of layout `l`),
/// built on the caller's stream by the image's summary kernel
/// (summaryKernelName): the table zeroed (entries past a level's end stay
/// 0, as buildSummaryTable leaves them), then one launch per level.
std::string summarizeOnDevice(const AttentionArgs &args, unsigned which, const SummaryLayout &l,
                              void *table, GPUStreamDriver &driver) {
  if (std::string error = driver.zeroAsync(table, size_t(l.bytes() / 4)); !error.empty())
    return error;
  const TensorRef &buffer = args.buffers[which];
  constexpr unsigned kThreads = unsigned(kSummaryThreads);
  unsigned blocks = unsigned((l.blocks + kThreads - 1) / kThreads);
  for (int64_t level = 0; level < l.levels; ++level) {
    std::vector<int64_t> words;
    appendMemref(words, buffer.data, buffer.shape, buffer.effectiveStrides());
    appendMemref(words, table, {l.levels, l.blocks, 2}, {l.blocks * 2, 2, 1});
    words.insert(words.end(), {level, l.length, l.rowLength, l.rowStride, l.block,
                               int64_t(buffer.dtype == DType::Bool)});
    std::vector<void *> params;
    for (int64_t &w : words)
      params.push_back(&w);
    // (The driver copies the parameters at the launch.)
    if (std::string error =
            driver.launchKernel(summaryKernelName(which), blocks, kThreads, params.data());
        !error.empty())
      return "building the summary of buffer " + std::to_string(which) + ": " + error;
  }
  return "";
}

/// A gated kernel's routed-row lists at `rows` and `counts` (device memory
/// of B * Hq * Sq and B * Hq words), built on the caller's stream by the
/// image's heed_gate_rows kernel from the gate buffer `gate` (GateRows.h):
/// one block per (b, h).
std::string routeOnDevice(const TensorRef &gate, void *rows, void *counts,
                          const AttentionDims &dims, GPUStreamDriver &driver) {
  std::vector<int64_t> words;
  appendMemref(words, gate.data, gate.shape, gate.effectiveStrides());
  int64_t n = dims.batch * dims.headsQ * dims.seqQ, m = dims.batch * dims.headsQ;
  appendMemref(words, rows, {n}, {1});
  appendMemref(words, counts, {m}, {1});
  words.insert(words.end(), {dims.headsQ, dims.seqQ});
  std::vector<void *> params;
  for (int64_t &w : words)
    params.push_back(&w);
  // (The driver copies the parameters at the launch.)
  if (std::string error = driver.launchKernel(kGateRowsKernel, unsigned(m),
                                              unsigned(kGateRowsThreads), params.data());
      !error.empty())
    return "building the routed rows: " + error;
  return "";
}

/// The tables the kernel reads beside the tensors, in the state's table
/// memory: the summaries the block classifier reads (document ids), built
/// on the caller's stream by the image's summary kernels where it has them
/// (no wait), else on the host from the buffers once the stream has written
/// them; and a gated kernel's routed-row lists, likewise (the image's
/// heed_gate_rows kernel, else the host).
std::string uploadHostTables(const KernelInfo &info, const AttentionArgs &args,
                             const AttentionDims &dims, GPUStreamDriver &driver,
                             GPUStreamState &state, std::vector<DeviceSummary> &summaries,
                             DeviceGateRows &gateRowsOut) {
  std::string error;
  std::vector<SummaryLayout> layouts;
  std::vector<bool> onDevice;
  // Routed rows: by the image's kernel where it has one (rank-3 gates; the
  // list entries are 32-bit).
  bool gated = !info.gate.empty();
  bool gateOnDevice = gated && driver.hasKernel(kGateRowsKernel) &&
                      args.buffers[size_t(info.gate[0])].shape.size() == 3 &&
                      dims.batch * dims.headsQ * dims.seqQ <=
                          std::numeric_limits<int32_t>::max();
  bool onHost = gated && !gateOnDevice;
  for (unsigned which : info.summarized) {
    layouts.push_back(summaryLayout(args.buffers[which], info.summaryBlock));
    // (The kernel indexes entries in 32 bits.)
    onDevice.push_back(layouts.back().length <= std::numeric_limits<int32_t>::max() &&
                       driver.hasKernel(summaryKernelName(which)));
    onHost = onHost || !onDevice.back();
  }
  // What the host builds, once the caller's stream has written the buffers.
  if (onHost && !(error = driver.synchronize()).empty())
    return error;
  std::vector<SummaryTable> built(layouts.size());
  for (size_t n = 0; n < layouts.size(); ++n) {
    if (onDevice[n])
      continue;
    std::vector<char> host;
    TensorRef copy;
    if (!(error = downloadBuffer(info, args, info.summarized[n], driver, host, copy, "summary"))
             .empty())
      return error;
    built[n] = buildSummaryTable(copy, info.summaryBlock);
  }
  GateRows gate;
  if (gated && !gateOnDevice) {
    std::vector<char> host;
    TensorRef copy;
    if (!(error = downloadBuffer(info, args, unsigned(info.gate[0]), driver, host, copy,
                                 "routed rows"))
             .empty())
      return error;
    gate = buildGateRows(copy, info.gate, dims.batch, dims.headsQ, dims.seqQ);
  }
  size_t gateRows = gated ? size_t(dims.batch * dims.headsQ * dims.seqQ) : 0,
         gateCounts = gated ? size_t(dims.batch * dims.headsQ) : 0;
  size_t gateBytes = (gateRows + gateCounts) * sizeof(int32_t);
  size_t total = gateBytes;
  for (const SummaryLayout &l : layouts)
    total += size_t(l.bytes());
  // Kernels queued earlier may still read the old tables: wait before
  // growing them (after the wait above, the stream is idle already).
  if (total > state.summaryBytes && state.summaries && !onHost &&
      !(error = driver.synchronize()).empty())
    return error;
  if (!(error = reserveDevice(driver, state.summaries, state.summaryBytes, total)).empty())
    return error;
  size_t offset = 0;
  for (size_t n = 0; n < layouts.size(); ++n) {
    const SummaryLayout &l = layouts[n];
    void *at = static_cast<char *>(state.summaries) + offset;
    if (onDevice[n])
      error = summarizeOnDevice(args, info.summarized[n], l, at, driver);
    else
      error = driver.uploadAsync(at, built[n].data.data(), size_t(l.bytes()));
    if (!error.empty())
      return error;
    summaries.push_back({at, l.levels, l.blocks});
    offset += size_t(l.bytes());
  }
  if (!gateBytes)
    return "";
  void *rows = static_cast<char *>(state.summaries) + offset;
  void *counts = static_cast<char *>(rows) + gateRows * sizeof(int32_t);
  if (gateOnDevice)
    error = routeOnDevice(args.buffers[size_t(info.gate[0])], rows, counts, dims, driver);
  else if ((error = driver.uploadAsync(rows, gate.rows.data(), gateRows * sizeof(int32_t)))
               .empty())
    error = driver.uploadAsync(counts, gate.counts.data(), gateCounts * sizeof(int32_t));
  if (!error.empty())
    return error;
  gateRowsOut = {rows, counts, int64_t(gateRows), int64_t(gateCounts)};
  return "";
}

/// The index tensors of a serving call (ServingTensors: kv_lens, page_table,
/// q_lens, cu_seqlens_q/kv, the entry order),
/// host tensors the caller passed and checkAttentionArgs read, copied into
/// the state's device memory on the caller's stream; `device` receives
/// their device views. (heed plans a serving call on the host, as
/// FlashInfer's plan() does: the grid and the checks need the lengths.)
std::string uploadServingTables(const KernelInfo &info, const AttentionArgs &args,
                                const AttentionDims &dims, GPUStreamDriver &driver,
                                GPUStreamState &state, std::vector<TensorRef> &device) {
  // (With the entry order, the blocks of item b compute entry order[b],
  // longest first: the GPU starts blocks in grid order.)
  ServingTensors serving(args, info, dims);
  const std::vector<const TensorRef *> &host = serving.tensors;
  if (host.empty())
    return "";
  // Each table's place in the device memory: side by side, 16-byte aligned.
  std::vector<size_t> at;
  size_t total = 0;
  for (const TensorRef *t : host) {
    at.push_back(total);
    total += (size_t(t->numElements()) * sizeof(int32_t) + 15) / 16 * 16;
  }
  std::string error;
  // Kernels queued earlier may still read the old tables: wait before growing.
  if (total > state.tableBytes && !(error = driver.synchronize()).empty())
    return error;
  if (!(error = reserveDevice(driver, state.tables, state.tableBytes, total)).empty())
    return error;
  // The tables gathered (through their views' strides) into a page-locked
  // staging slot, one copy that waits for nothing.
  int slot = state.nextTableSlot;
  state.nextTableSlot = (slot + 1) % GPUStreamState::kTableSlots;
  if (state.tableCopying[slot]) { // the slot's last copy may not have run yet
    bool done = false;
    if (!(error = driver.queryEvent(state.tableEvents[slot], done)).empty() ||
        (!done && !(error = driver.synchronize()).empty()))
      return error;
    state.tableCopying[slot] = false;
  }
  if (!state.tableEvents[slot] && !(error = driver.createEvent(&state.tableEvents[slot])).empty())
    return error;
  if (state.tableSlotBytes[slot] < total) { // made, or grown: its copy is done (above)
    size_t bytes = GPUStreamState::kTableSlotBytes;
    while (bytes < total)
      bytes *= 2;
    if (state.tableStaging[slot])
      driver.freeHost(state.tableStaging[slot]);
    state.tableStaging[slot] = nullptr;
    state.tableSlotBytes[slot] = 0;
    if (!(error = driver.allocateHost(bytes, &state.tableStaging[slot])).empty())
      return error;
    state.tableSlotBytes[slot] = bytes;
  }
  char *staging = static_cast<char *>(state.tableStaging[slot]);
  for (size_t i = 0; i < host.size(); ++i) {
    const TensorRef &t = *host[i];
    std::vector<int64_t> strides = t.effectiveStrides();
    auto *to = reinterpret_cast<int32_t *>(staging + at[i]);
    for (int64_t e = 0; e < t.numElements(); ++e) {
      int64_t from = 0, rest = e;
      for (size_t d = t.shape.size(); d-- > 0;) {
        from += (rest % t.shape[d]) * strides[d];
        rest /= t.shape[d];
      }
      to[e] = static_cast<const int32_t *>(t.data)[from];
    }
    device.push_back(TensorRef{static_cast<char *>(state.tables) + at[i], DType::I32, t.shape, {}});
  }
  if (!(error = driver.uploadAsync(state.tables, staging, total)).empty() ||
      !(error = driver.recordEvent(state.tableEvents[slot])).empty())
    return error;
  state.tableCopying[slot] = true;
  return "";
}

} // namespace

/// (GPUAttentionLaunch.h) "" unless the caller's stream is being captured
/// into a graph: heed plans each call on the host (index tables through a staging ring, split-KV
/// parts, the status word read back after the fact, a workspace grown on
/// demand), which a graph would replay stale, and some of it (allocations,
/// event queries) would invalidate the capture. Refused before any call on
/// the stream, so the caller's capture stays valid.
std::string refuseGraphCapture(GPUStreamDriver &driver) {
  bool active = false;
  if (std::string err = driver.capturing(active); !err.empty())
    return err;
  if (!active)
    return "";
  return "the stream is being captured into a graph: heed plans each call on the host "
         "(index tables, split-KV parts, the status read back) and cannot be captured yet; "
         "launch it outside the capture (docs/runtime.md, \"Graphs\")";
}

std::string launchGPUAttention(const KernelInfo &info, const AttentionArgs &args,
                               const GPULaunch &launch, GPUStreamDriver &driver,
                               GPUStreamState &state, const GPULaunchOptions &options,
                               GPULaunchChoice *choice) {
  AttentionDims dims;
  if (std::string err = checkAttentionArgs(args, info, dims); !err.empty())
    return err;
  if (std::string err = driver.checkTensors(args); !err.empty())
    return err;
  if (launch.blockRows <= 0 || launch.threads <= 0)
    return "the GPU kernel has no launch shape";
  if (std::string err = refuseGraphCapture(driver); !err.empty())
    return err;
  if (dims.batch == 0 || dims.headsQ == 0 || dims.seqQ == 0)
    return "";
  std::lock_guard<std::mutex> lock(state.mutex);
  std::string error;
  if (!(error = prepare(driver, state)).empty())
    return error;
  if (!(error = collect(driver, state, /*waited=*/false, /*thisLaunch=*/false)).empty())
    return error;
  std::vector<DeviceSummary> summaries;
  DeviceGateRows gateRows;
  if ((!info.summarized.empty() || !info.gate.empty()) &&
      !(error = uploadHostTables(info, args, dims, driver, state, summaries, gateRows)).empty())
    return error;
  // The wgmma kernel's TMA descriptors of q, k and v.
  std::vector<TensorMapBytes> maps;
  if (launch.tensorMapRowsQ > 0) {
    maps.resize(3);
    const TensorRef *tensors[] = {&args.q, &args.k, &args.v};
    for (int i = 0; i < 3; ++i)
      if (!(error = driver.encodeTensorMap(maps[i].bytes, *tensors[i], info.layout,
                                           i ? launch.tensorMapRowsKV : launch.tensorMapRowsQ))
               .empty())
        return error;
  }
  std::vector<TensorRef> serving;
  if (!(error = uploadServingTables(info, args, dims, driver, state, serving)).empty())
    return error;
  void *stats = static_cast<char *>(state.words) + 8;
  // (Patches of a token grid: their count, docs/passes.md "Patch tiling".)
  int64_t queryTiles = launch.queryTiles(dims.seqQ);
  if (queryTiles > std::numeric_limits<int32_t>::max())
    return "the query sequence needs more than 2^31 - 1 blocks";
  unsigned gridX = unsigned(queryTiles);
  // A kernel that packs a GQA group's queries into one tile (decode:
  // --attn-pack-gqa, the kernel's own run-time condition): one block per
  // key/value head.
  bool packed = packsGQA(dims, nullptr, launch.packedRows);
  if (packed)
    gridX = 1;
  unsigned gridY = unsigned(packed ? dims.headsKV : dims.headsQ);
  // Split-KV (docs/decode.md, "Split-KV on the GPU"): phase 1 computes
  // `count` parts of each item's key range into the workspace, phase 2
  // merges them; phase 0 (count 1) is the item at once.
  int64_t count = 1, longest = longestKeys(args, info, dims);
  if (launch.splitKV && !launch.splitKVWhole) { // (a gated kernel's loops run whole)
    count = chooseGPUKVSplits(int64_t(gridX) * gridY * dims.batch, longest,
                              driver.residentBlocks());
    // Bounded by the grid's x (2^31 - 1 blocks) and a workspace of at most
    // kMaxSplitWorkspace (a forced count on a prefill call would ask for
    // gigabytes): fewer parts where either would be exceeded.
    int64_t perPart =
        SplitWorkspaceLayout::partElements(dims, info.headDimV) * int64_t(sizeof(float));
    count = std::min<int64_t>(count, std::numeric_limits<int32_t>::max() / gridX);
    count = std::min<int64_t>(count, std::max<int64_t>(1, kMaxSplitWorkspace / perPart));
  }
  // Parts of equal work: a short entry's items in fewer parts.
  SplitArgs split{/*phase=*/count > 1 ? 1 : 0, count, splitPartKeys(longest, count),
                  launch.splitPartKeys, /*workspace=*/nullptr,
                  SplitWorkspaceLayout(count, dims, info.headDimV)};
  if (count > 1) {
    size_t bytes = size_t(split.layout.elements()) * sizeof(float);
    // Kernels queued earlier may still use the old workspace: wait before
    // growing it.
    if (bytes > state.splitWorkspaceBytes && state.splitWorkspace &&
        !(error = driver.synchronize()).empty())
      return error;
    if (!(error = reserveDevice(driver, state.splitWorkspace, state.splitWorkspaceBytes, bytes))
             .empty())
      return error;
    split.workspace = state.splitWorkspace;
  }
  if (choice) {
    choice->splits = split.count;
    choice->packedGQA = packed;
  }
  GPUKernelArgs params(info, args, dims, serving, summaries, gateRows, state.words, stats,
                       launch.splitKV ? &split : nullptr, maps);
  // Persistent workers (--attn-persistent-workers): (workers, 1, 1) blocks,
  // the device's resident blocks and at most one per item (unknown: one
  // per item); each walks the items x, x + workers, ...
  auto grid = [&](unsigned x) -> std::array<unsigned, 3> {
    if (!launch.persistent)
      return {x, gridY, unsigned(dims.batch)};
    int64_t items = int64_t(x) * gridY * dims.batch;
    int64_t resident = driver.residentBlocks();
    int64_t workers = resident > 0 ? std::min(items, resident) : items;
    return {unsigned(std::min<int64_t>(workers, std::numeric_limits<int32_t>::max())), 1, 1};
  };
  auto [x1, y1, z1] = grid(gridX * unsigned(split.count));
  if (!(error = driver.launch(x1, y1, z1, params.params())).empty())
    return error;
  if (split.count > 1) {
    params.setPhase(2);
    auto [x2, y2, z2] = grid(gridX);
    if (!(error = driver.launch(x2, y2, z2, params.params())).empty())
      return error;
  }
  std::vector<std::string> bufferNames;
  for (const BufferInfo &b : info.buffers)
    bufferNames.push_back(b.name);
  if (state.launched.size() < kRememberedVariants &&
      std::find_if(state.launched.begin(), state.launched.end(), [&](const auto &v) {
        return v.first == info.name && v.second == bufferNames;
      }) == state.launched.end())
    state.launched.emplace_back(info.name, std::move(bufferNames));
  // The status comes back with the stream: read by a later launch, a check,
  // or below.
  if (!(error = driver.downloadAsync(state.hostStatus, state.words, sizeof(int32_t))).empty() ||
      !(error = driver.recordEvent(state.event)).empty())
    return error;
  state.pending = true;
  if (!options.synchronous)
    return "";
  if (!(error = driver.synchronize()).empty())
    return error;
  return collect(driver, state, /*waited=*/true, /*thisLaunch=*/true);
}

namespace {

/// The backward kernels' parameters: each memref expanded as the forward's
/// (GPUKernelArgs), in buildBackwardModule's order: q, k, v, dout, [out],
/// lse, delta, buffers, summaries, dq, dk, dv, gradients, a ragged batch's
/// lengths (`lengths`, device tensors: kv_lens, q_lens, cu_seqlens_q,
/// cu_seqlens_kv, those the kernel takes), status, stats, the work range,
/// the buffer gradients' words and the finalize flag, then a wgmma
/// kernel's tensor maps by value (`maps`).
/// Packed sequences' row tensors go as the forward's (kernelView: [B,
/// longest, ...] of batch stride 0), dout and dq as q, dk and dv as k.
class GPUBackwardArgs {
public:
  GPUBackwardArgs(const KernelInfo &info, const AttentionDims &dims, const GPUBackwardTensors &t,
                  const std::vector<TensorRef> &lengths,
                  const std::vector<DeviceSummary> &summaries, bool withOut, void *status,
                  void *stats, void *gradWorkspace, int64_t gradWords,
                  std::vector<TensorMapBytes> &maps) {
    auto memref = [&](const void *data, const std::vector<int64_t> &shape,
                      const std::vector<int64_t> &strides) {
      appendMemref(words, data, shape, strides);
    };
    auto tensor = [&](const TensorRef &x) { memref(x.data, x.shape, x.effectiveStrides()); };
    const AttentionArgs &f = t.forward;
    // `x` as the kernel views `like` (packed: from each entry's first row).
    auto viewed = [&](const TensorRef &x, CallTensor like) {
      AttentionArgs as = f;
      (like == CallTensor::Q ? as.q : like == CallTensor::K ? as.k : as.lse) = x;
      tensor(kernelView(as, info, dims, like));
    };
    viewed(f.q, CallTensor::Q);
    viewed(f.k, CallTensor::K);
    viewed(f.v, CallTensor::K);
    viewed(t.dout, CallTensor::Q);
    if (withOut)
      viewed(f.out, CallTensor::Q);
    viewed(f.lse, CallTensor::Lse);
    viewed(t.delta, CallTensor::Lse);
    for (const TensorRef &b : f.buffers)
      tensor(b);
    for (const DeviceSummary &d : summaries)
      memref(d.data, {d.levels, d.blocks, 2}, {d.blocks * 2, 2, 1});
    viewed(t.dq, CallTensor::Q);
    viewed(t.dk, CallTensor::K);
    viewed(t.dv, CallTensor::K);
    for (const TensorRef &g : t.bufferGrads)
      tensor(g);
    for (const TensorRef &l : lengths)
      tensor(l);
    memref(status, {1}, {1});
    memref(stats, {3}, {1});
    words.insert(words.end(), {0, 0});
    // The buffer gradients' accumulators and the finalize flag (the
    // kernels' last two arguments: GradientAccumulators.cpp).
    memref(gradWorkspace, {gradWords}, {1});
    words.push_back(0);
    for (int64_t &w : words)
      pointers.push_back(&w);
    for (TensorMapBytes &m : maps)
      pointers.push_back(m.bytes);
  }
  void **params() { return pointers.data(); }
  /// The finalizing launch: each thread writes one gradient element.
  void setFinalize() { words.back() = 1; }

private:
  std::vector<int64_t> words;
  std::vector<void *> pointers;
};

/// The backward's own tensors against the forward's dims: "" or the error.
std::string checkBackwardTensors(const GPUBackwardTensors &t, const KernelInfo &info,
                                 const std::vector<unsigned> &gradients) {
  const AttentionArgs &f = t.forward;
  struct Pair {
    const char *name;
    const TensorRef *got, *like;
  };
  for (Pair p : {Pair{"dout", &t.dout, &f.out}, Pair{"dq", &t.dq, &f.q}, Pair{"dk", &t.dk, &f.k},
                 Pair{"dv", &t.dv, &f.v}})
    if (p.got->shape != p.like->shape || p.got->dtype != info.dtype || !p.got->data ||
        p.got->effectiveStrides().back() != 1)
      return std::string(p.name) + " must be a " + toString(info.dtype) +
             " tensor shaped like " + (p.like == &f.out ? "out" : "its input") +
             " with a contiguous head dim, got " + p.got->describe();
  if (t.delta.dtype != DType::F32 || t.delta.shape != f.lse.shape || !t.delta.isContiguous())
    return "delta must be contiguous f32 shaped like lse, got " + t.delta.describe();
  if (t.bufferGrads.size() != gradients.size())
    return "the backward writes " + std::to_string(gradients.size()) +
           " buffer gradients, got " + std::to_string(t.bufferGrads.size()) + " tensors";
  for (size_t g = 0; g < gradients.size(); ++g) {
    const TensorRef &x = t.bufferGrads[g];
    if (x.dtype != DType::F32 || x.shape != f.buffers[gradients[g]].shape || !x.isContiguous())
      return "the gradient of buffer '" + info.buffers[gradients[g]].name +
             "' must be contiguous f32 shaped like it, got " + x.describe();
  }
  return "";
}

} // namespace

std::string launchGPUBackward(const KernelInfo &info, const GPUBackwardTensors &args,
                              const std::vector<unsigned> &gradients, const GPULaunch &dq,
                              GPUStreamDriver &dqDriver, const GPULaunch &dkdv,
                              GPUStreamDriver &dkdvDriver, GPUStreamState &state,
                              const GPULaunchOptions &options) {
  AttentionDims dims;
  if (!info.lse)
    return "the GPU backward reads the forward's lse: describe the kernel with lse";
  if (std::string err = checkAttentionArgs(args.forward, info, dims); !err.empty())
    return err;
  if (std::string err = checkBackwardTensors(args, info, gradients); !err.empty())
    return err;
  // The kernels address one (batch, head)'s rows of q, k, v, dout (and
  // lse, delta) with 32-bit offsets (docs/backward.md, "GPU kernels").
  unsigned pos = info.layout == Layout::BSHD ? 1 : 2;
  // (Either way: a view may step backwards through its rows.)
  auto span = [](const TensorRef &t, unsigned dim) {
    std::vector<int64_t> strides = t.effectiveStrides();
    return (t.shape[dim] - 1) * std::abs(strides[dim]) +
           (dim + 1 < t.shape.size() ? t.shape.back() : 1);
  };
  for (auto [name, t] : {std::pair<const char *, const TensorRef *>{"q", &args.forward.q},
                         {"k", &args.forward.k}, {"v", &args.forward.v}, {"dout", &args.dout}})
    if (t->shape.size() == 4 && t->shape[pos] > 0 &&
        span(*t, pos) > std::numeric_limits<int32_t>::max())
      return std::string("the GPU backward addresses a head's rows of ") + name +
             " with 32-bit offsets: its rows span " + std::to_string(span(*t, pos)) +
             " elements, more than 2^31 - 1 (" + t->describe() + ")";
  for (const TensorRef *t : {&args.forward.lse, &args.delta})
    if (t->shape.size() == 3 && t->shape[2] > 0 && span(*t, 2) > std::numeric_limits<int32_t>::max())
      return "the GPU backward addresses lse and delta rows with 32-bit offsets: " +
             t->describe() + " spans more than 2^31 - 1 elements";
  // The dQ kernel stages K and V rows with 16-byte copies, the dK/dV
  // kernel Q and dO rows.
  AttentionArgs staged = args.forward;
  staged.k = args.forward.q;
  staged.v = args.dout;
  if (std::string err = dqDriver.checkTensors(args.forward); !err.empty())
    return err;
  if (std::string err = dkdvDriver.checkTensors(staged); !err.empty())
    return err;
  if (dq.blockRows <= 0 || dkdv.blockRows <= 0)
    return "the GPU backward kernels have no launch shape";
  if (std::string err = refuseGraphCapture(dqDriver); !err.empty())
    return err;
  std::lock_guard<std::mutex> lock(state.mutex);
  std::string error;
  if (!(error = prepare(dqDriver, state)).empty() ||
      !(error = collect(dqDriver, state, /*waited=*/false, /*thisLaunch=*/false)).empty())
    return error;
  if (dims.batch == 0 || dims.headsQ == 0 || dims.seqQ == 0 || dims.seqKV == 0) {
    // No key (dQ is 0) or no query (dK and dV are 0): nothing to launch, but
    // every gradient is written, as the kernels would.
    for (const TensorRef &g : args.bufferGrads)
      if (g.numElements() &&
          !(error = dqDriver.zeroAsync(g.data, size_t(g.numElements()))).empty())
        return error;
    for (const TensorRef *g : {&args.dq, &args.dk, &args.dv}) {
      if (!g->numElements())
        continue;
      size_t bytes = size_t(g->numElements()) * dtypeSize(g->dtype);
      if (!g->isContiguous() || bytes % 4)
        return "an empty attention's gradients are zeroed: dq, dk and dv must then be "
               "contiguous, got " + g->describe();
      if (!(error = dqDriver.zeroAsync(g->data, bytes / 4)).empty())
        return error;
    }
    return "";
  }
  std::vector<DeviceSummary> summaries;
  DeviceGateRows unused;
  if (!info.summarized.empty() &&
      !(error = uploadHostTables(info, args.forward, dims, dqDriver, state, summaries, unused))
           .empty())
    return error;
  // A ragged batch: its lengths on the device (the forward's tables but
  // the entry order, which the backward does not take: not computed), and the gradients'
  // rows past each entry zeroed first (the kernels write only the
  // entries').
  std::vector<TensorRef> lengths;
  bool ragged = info.kvLens || info.qLens || info.cuSeqlensQ || info.cuSeqlensKV;
  if (ragged) {
    if (info.pageSize > 0)
      return "the backward takes keys and values as tensors, not as a paged KV cache";
    KernelInfo tables = info; // (no entry order: the backward's grid takes none)
    tables.entryOrder = false;
    if (!(error = uploadServingTables(tables, args.forward, dims, dqDriver, state, lengths))
             .empty())
      return error;
    for (const TensorRef *g : {&args.dq, &args.dk, &args.dv}) {
      size_t bytes = size_t(g->numElements()) * dtypeSize(g->dtype);
      if (!g->isContiguous() || bytes % 4 || reinterpret_cast<uintptr_t>(g->data) % 4)
        return "a ragged batch's gradients are zeroed past each entry (in 4-byte words): dq, "
               "dk and dv must be contiguous and 4-byte aligned, got " +
               g->describe();
      if (bytes && !(error = dqDriver.zeroAsync(g->data, bytes / 4)).empty())
        return error;
    }
  }
  void *stats = static_cast<char *>(state.words) + 8;
  auto grid = [](int64_t n, int64_t rows) { return unsigned((n + rows - 1) / rows); };
  // The buffers' gradients: fixed-point accumulators (8 words an element),
  // zeroed on the stream, turned into the f32 gradients by a last launch of
  // the dK/dV kernel (docs/backward.md, "Deterministic buffer gradients on
  // GPUs").
  int64_t gradElements = 0;
  for (const TensorRef &g : args.bufferGrads)
    gradElements += g.numElements();
  constexpr int64_t kGradWordsPerElement = 8; // (GradientAccumulators.cpp)
  int64_t gradWords = kGradWordsPerElement * gradElements;
  if (gradElements > 0) {
    size_t bytes = size_t(gradWords) * sizeof(int64_t);
    // The kernels address the words with 32-bit offsets.
    if (gradElements > (int64_t(std::numeric_limits<int32_t>::max()) - 1) / kGradWordsPerElement)
      return "the buffers' gradients have " + std::to_string(gradElements) +
             " elements: the GPU backward accumulates at most " +
             std::to_string((int64_t(std::numeric_limits<int32_t>::max()) - 1) /
                            kGradWordsPerElement) +
             " (8 words each, 32-bit offsets)";
    // Kernels queued earlier may still use the old workspace: wait before
    // growing it.
    if (bytes > state.gradWorkspaceBytes && state.gradWorkspace &&
        !(error = dqDriver.synchronize()).empty())
      return error;
    if (!(error = reserveDevice(dqDriver, state.gradWorkspace, state.gradWorkspaceBytes, bytes))
             .empty() ||
        !(error = dqDriver.zeroAsync(state.gradWorkspace, bytes / 4)).empty())
      return error;
  }
  void *gradWorkspace = gradElements > 0 ? state.gradWorkspace : nullptr;
  // The wgmma kernels' TMA descriptors: of the item's two operand tiles
  // (64 rows), then of the slots' two tensors: the dQ kernel's q and dout,
  // then k and v; the dK/dV kernel's k and v, then q and dout. Both before
  // the first launch: a map that cannot be encoded launches nothing.
  std::vector<TensorMapBytes> dqMaps, dkdvMaps;
  auto encode = [&](const GPULaunch &launch, GPUStreamDriver &driver,
                    std::array<const TensorRef *, 4> tensors,
                    std::vector<TensorMapBytes> &maps) -> std::string {
    if (launch.tensorMapRowsQ <= 0)
      return "";
    maps.resize(4);
    for (int i = 0; i < 4; ++i)
      if (std::string err = driver.encodeTensorMap(
              maps[i].bytes, *tensors[i], info.layout,
              i < 2 ? launch.tensorMapRowsQ : launch.tensorMapRowsKV);
          !err.empty())
        return err;
    return "";
  };
  if (!(error = encode(dq, dqDriver, {&args.forward.q, &args.dout, &args.forward.k, &args.forward.v},
                       dqMaps))
           .empty() ||
      !(error = encode(dkdv, dkdvDriver,
                       {&args.forward.k, &args.forward.v, &args.forward.q, &args.dout}, dkdvMaps))
           .empty())
    return error;
  // The dQ kernel computes delta (softmax rows) and writes it; the dK/dV
  // kernel after it on the stream reads it.
  GPUBackwardArgs dqParams(info, dims, args, lengths, summaries, /*withOut=*/true, state.words,
                           stats, gradWorkspace, gradWords, dqMaps);
  // (Patches of a token grid: their count, GPULaunch::queryTiles; the dK/dV
  // kernel's items are key tiles.)
  if (dq.queryTiles(dims.seqQ) > std::numeric_limits<int32_t>::max() ||
      dkdv.queryTiles(dims.seqKV) > std::numeric_limits<int32_t>::max())
    return "the sequences need more than 2^31 - 1 blocks";
  if (!(error = dqDriver.launch(unsigned(dq.queryTiles(dims.seqQ)), unsigned(dims.headsQ),
                                unsigned(dims.batch), dqParams.params()))
           .empty())
    return error;
  GPUBackwardArgs dkdvParams(info, dims, args, lengths, summaries, /*withOut=*/false,
                             state.words, stats, gradWorkspace, gradWords, dkdvMaps);
  if (!(error = dkdvDriver.launch(unsigned(dkdv.queryTiles(dims.seqKV)), unsigned(dims.headsKV),
                                  unsigned(dims.batch), dkdvParams.params()))
           .empty())
    return error;
  if (gradElements > 0) {
    dkdvParams.setFinalize();
    if (!(error = dkdvDriver.launch(grid(gradElements, dkdv.threads), 1, 1,
                                    dkdvParams.params()))
             .empty())
      return error;
  }
  std::vector<std::string> bufferNames;
  for (const BufferInfo &b : info.buffers)
    bufferNames.push_back(b.name);
  if (state.launched.size() < kRememberedVariants)
    state.launched.emplace_back(info.name + " (backward)", std::move(bufferNames));
  if (!(error = dqDriver.downloadAsync(state.hostStatus, state.words, sizeof(int32_t))).empty() ||
      !(error = dqDriver.recordEvent(state.event)).empty())
    return error;
  state.pending = true;
  if (!options.synchronous)
    return "";
  if (!(error = dqDriver.synchronize()).empty())
    return error;
  return collect(dqDriver, state, /*waited=*/true, /*thisLaunch=*/true);
}

std::string checkGPUStream(GPUStreamDriver &driver, GPUStreamState &state) {
  // (A synchronize would invalidate a capture on the stream.)
  if (std::string err = refuseGraphCapture(driver); !err.empty())
    return err;
  std::lock_guard<std::mutex> lock(state.mutex);
  if (!state.ready)
    return "";
  if (std::string error = driver.synchronize(); !error.empty())
    return error;
  return collect(driver, state, /*waited=*/true, /*thisLaunch=*/false);
}

} // namespace heed
