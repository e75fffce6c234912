// A device kernel of a variant's sm_80 image loaded in the PTX emulator
// (unittests/CAPI/ptx_emulator.h), for the table kernels' tests
// (SummaryKernelTest.cpp, GateRowsKernelTest.cpp).
#ifndef HEED_UNITTESTS_EMULATEDKERNEL_H
#define HEED_UNITTESTS_EMULATEDKERNEL_H

#include "heed/Compiler/GPU.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/GPUAttentionLaunch.h"

#include "../CAPI/ptx_emulator.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace heed::emulated {

/// A memref argument's words: the runtime's (every launch builds them so).
using heed::appendMemref;

/// The kernel `name` of `spec`'s sm_80 image (bf16, D = 64) in the emulator;
/// unloaded with the object.
struct EmulatedKernel {
  void *module = nullptr, *function = nullptr;
  EmulatedKernel() = default;
  EmulatedKernel(const EmulatedKernel &) = delete;
  EmulatedKernel &operator=(const EmulatedKernel &) = delete;
  ~EmulatedKernel() {
    if (module)
      ptxemu_unload(module);
  }

  /// Compiles and loads it (the image must hold `name`); the failure says why.
  ::testing::AssertionResult load(const char *spec, const std::string &name) {
    auto parsed = spec::parseSpec(spec, "kernel.attn");
    if (!parsed)
      return ::testing::AssertionFailure() << llvm::toString(parsed.takeError());
    auto variant = spec::selectVariant(std::move(*parsed), "");
    if (!variant)
      return ::testing::AssertionFailure() << llvm::toString(variant.takeError());
    KernelConfig config;
    config.dtype = DType::BF16;
    config.headDim = config.headDimV = 64;
    auto target = CUDATarget::parse("sm_80");
    if (!target)
      return ::testing::AssertionFailure() << llvm::toString(target.takeError());
    auto binary = compileCUDA(*variant, config, *target);
    if (!binary)
      return ::testing::AssertionFailure() << llvm::toString(binary.takeError());
    if (binary->ptx.find(".entry " + name + "(") == std::string::npos)
      return ::testing::AssertionFailure() << "the image has no " << name;
    char err[512] = {0};
    if (!(module = ptxemu_load(binary->ptx.c_str(), err, sizeof err)))
      return ::testing::AssertionFailure() << err;
    if (!(function = ptxemu_function(module, name.c_str())))
      return ::testing::AssertionFailure() << "no function " << name << " in the emulator";
    return ::testing::AssertionSuccess();
  }
};

} // namespace heed::emulated

#endif
