// See GPUAttentionLaunch.h.
#include "heed/Runtime/GPUAttentionLaunch.h"

#include "heed/Runtime/BufferSummary.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

namespace heed {

namespace {

/// The summaries of `info.summarized` from device buffers, built on the host.
std::string summarizeDeviceBuffers(const KernelInfo &info, const AttentionArgs &args,
                                   GPUStreamDriver &driver, std::vector<SummaryTable> &out) {
  for (unsigned which : info.summarized) {
    const TensorRef &device = args.buffers[which];
    size_t bytes = size_t(summarySpan(device)) * dtypeSize(device.dtype);
    std::vector<char> host(std::max<size_t>(bytes, 1));
    if (bytes)
      if (std::string err = driver.download(host.data(), device.data, bytes); !err.empty())
        return "reading buffer '" + info.buffers[which].name + "' for its summary: " + err;
    TensorRef copy = device;
    copy.data = host.data();
    out.push_back(buildSummaryTable(copy, info.summaryBlock));
  }
  return "";
}

/// A summary table in device memory.
struct DeviceSummary {
  const void *data = nullptr;
  int64_t levels = 1, blocks = 1;
};

/// The kernel's arguments, a pointer per scalar as the driver APIs take them:
/// q, k, v, the buffers, the summaries, out, lse if written, the status word
/// (i32) and the stats (3 x i64), the work range.
class GPUKernelArgs {
public:
  GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args,
                const std::vector<DeviceSummary> &summaries, void *status, void *stats);
  GPUKernelArgs(const GPUKernelArgs &) = delete;
  GPUKernelArgs &operator=(const GPUKernelArgs &) = delete;
  void **params() { return pointers.data(); }

private:
  std::vector<int64_t> words;
  std::vector<void *> pointers;
};

GPUKernelArgs::GPUKernelArgs(const KernelInfo &info, const AttentionArgs &args,
                             const std::vector<DeviceSummary> &summaries, void *status,
                             void *stats) {
  auto memref = [&](const void *data, const std::vector<int64_t> &shape,
                    const std::vector<int64_t> &strides) {
    auto p = reinterpret_cast<int64_t>(data);
    words.push_back(p);
    words.push_back(p);
    words.push_back(0);
    words.insert(words.end(), shape.begin(), shape.end());
    words.insert(words.end(), strides.begin(), strides.end());
  };
  auto tensor = [&](const TensorRef &t) { memref(t.data, t.shape, t.effectiveStrides()); };
  tensor(args.q);
  tensor(args.k);
  tensor(args.v);
  for (const TensorRef &b : args.buffers)
    tensor(b);
  for (size_t n = 0; n < info.summarized.size(); ++n) {
    DeviceSummary t = n < summaries.size() ? summaries[n] : DeviceSummary{};
    memref(t.data, {t.levels, t.blocks, 2}, {t.blocks * 2, 2, 1});
  }
  tensor(args.out);
  if (info.lse)
    tensor(args.lse);
  memref(status, {1}, {1});
  memref(stats, {3}, {1});
  words.push_back(0);
  words.push_back(0);
  for (int64_t &w : words)
    pointers.push_back(&w);
}

} // namespace

GPULaunchOptions GPULaunchOptions::fromEnvironment() {
  GPULaunchOptions options;
  const char *sync = std::getenv("HEED_GPU_SYNC");
  options.synchronous = sync && *sync && std::string(sync) != "0";
  return options;
}

GPUStreamState &GPUStreamStates::get(int device, void *stream) {
  std::lock_guard<std::mutex> lock(mutex);
  auto &state = states[{device, stream}];
  if (!state)
    state = std::make_unique<GPUStreamState>();
  return *state;
}

namespace {

constexpr size_t kWordBytes = 32; ///< status i32 at 0, stats 3 x i64 at 8
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

/// The summaries the block classifier reads (document ids), built on the
/// host from the device buffers once the caller's stream has written them,
/// and uploaded into the state's summary memory.
std::string uploadSummaries(const KernelInfo &info, const AttentionArgs &args,
                            GPUStreamDriver &driver, GPUStreamState &state,
                            std::vector<DeviceSummary> &summaries) {
  std::string error;
  if (!(error = driver.synchronize()).empty())
    return error;
  std::vector<SummaryTable> built;
  if (!(error = summarizeDeviceBuffers(info, args, driver, built)).empty())
    return error;
  size_t total = 0;
  for (const SummaryTable &t : built)
    total += t.data.size() * sizeof(int64_t);
  // The stream is idle (synchronized above): the old memory is unused.
  if (total > state.summaryBytes) {
    if (state.summaries)
      driver.free(state.summaries);
    state.summaries = nullptr;
    state.summaryBytes = 0;
    if (!(error = driver.allocate(total, &state.summaries)).empty())
      return error;
    state.summaryBytes = total;
  }
  size_t offset = 0;
  for (const SummaryTable &t : built) {
    size_t bytes = t.data.size() * sizeof(int64_t);
    void *at = static_cast<char *>(state.summaries) + offset;
    if (!(error = driver.uploadAsync(at, t.data.data(), bytes)).empty())
      return error;
    summaries.push_back({at, t.levels, t.blocks});
    offset += bytes;
  }
  return "";
}

} // namespace

std::string launchGPUAttention(const KernelInfo &info, const AttentionArgs &args,
                               const GPULaunch &launch, GPUStreamDriver &driver,
                               GPUStreamState &state, const GPULaunchOptions &options) {
  AttentionDims dims;
  if (std::string err = checkAttentionArgs(args, info, dims); !err.empty())
    return err;
  if (!info.gate.empty())
    return "gated kernels do not run on the GPU yet";
  if (std::string err = driver.checkTensors(args); !err.empty())
    return err;
  if (launch.blockRows <= 0 || launch.threads <= 0)
    return "the GPU kernel has no launch shape";
  if (dims.batch == 0 || dims.headsQ == 0 || dims.seqQ == 0)
    return "";
  std::lock_guard<std::mutex> lock(state.mutex);
  std::string error;
  if (!(error = prepare(driver, state)).empty())
    return error;
  if (!(error = collect(driver, state, /*waited=*/false, /*thisLaunch=*/false)).empty())
    return error;
  std::vector<DeviceSummary> summaries;
  if (!info.summarized.empty() &&
      !(error = uploadSummaries(info, args, driver, state, summaries)).empty())
    return error;
  void *stats = static_cast<char *>(state.words) + 8;
  GPUKernelArgs params(info, args, summaries, state.words, stats);
  unsigned gridX = unsigned((dims.seqQ + launch.blockRows - 1) / launch.blockRows);
  if (!(error = driver.launch(gridX, unsigned(dims.headsQ), unsigned(dims.batch),
                              params.params()))
           .empty())
    return error;
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

std::string checkGPUStream(GPUStreamDriver &driver, GPUStreamState &state) {
  std::lock_guard<std::mutex> lock(state.mutex);
  if (!state.ready)
    return "";
  if (std::string error = driver.synchronize(); !error.empty())
    return error;
  return collect(driver, state, /*waited=*/true, /*thisLaunch=*/false);
}

} // namespace heed
