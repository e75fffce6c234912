// Helpers the compiler test suites share.
#ifndef HEED_UNITTESTS_COMPILER_TESTSPECS_H
#define HEED_UNITTESTS_COMPILER_TESTSPECS_H

#include "heed/Frontend/Parser.h"

#include <gtest/gtest.h>

#include <string>

namespace heed::test {

/// The only variant of `text` (a test failure if it does not parse).
inline spec::Variant parse(const std::string &text) {
  auto parsed = spec::parseSpec(text, "test.attn");
  EXPECT_TRUE(static_cast<bool>(parsed)) << llvm::toString(parsed.takeError());
  auto v = spec::selectVariant(std::move(*parsed), "");
  EXPECT_TRUE(static_cast<bool>(v)) << llvm::toString(v.takeError());
  return *v;
}

} // namespace heed::test

#endif
