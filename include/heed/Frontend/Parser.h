// The textual spec frontend: `.attn` text -> elaborated Variants.
#ifndef HEED_FRONTEND_PARSER_H
#define HEED_FRONTEND_PARSER_H

#include "heed/Frontend/Spec.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace heed::spec {

/// `name=value` settings that replace the defaults of a variant's params.
using ParamOverrides = std::vector<std::pair<std::string, std::string>>;

/// Turns command-line `name=value` settings into overrides; the error names
/// the first malformed one.
llvm::Expected<ParamOverrides> parseParamAssignments(llvm::ArrayRef<std::string> settings);

/// Parses and elaborates every variant in `text`. On failure the error's
/// message holds every diagnostic formatted like a compiler's:
/// `file:line:col: error: message`, the source line, and a caret.
llvm::Expected<std::vector<Variant>>
parseSpec(llvm::StringRef text, llvm::StringRef filename,
          const ParamOverrides &overrides = {});

/// Picks the variant called `name` from a parsed file; an empty name picks the
/// only variant (an error if there are several).
llvm::Expected<Variant> selectVariant(std::vector<Variant> variants,
                                      llvm::StringRef name);

/// The largest spec parseSpec and parseSpecFile accept, in bytes (1 MiB): a
/// spec is a few lines, and a bound keeps hostile input from exhausting memory.
constexpr size_t kMaxSpecBytes = size_t(1) << 20;

/// Reads `path` and parses it (see parseSpec). Only a regular file of at most
/// kMaxSpecBytes is read: a device, a FIFO or a directory is an error.
llvm::Expected<std::vector<Variant>>
parseSpecFile(llvm::StringRef path, const ParamOverrides &overrides = {});

} // namespace heed::spec

#endif // HEED_FRONTEND_PARSER_H
