// The library of named masks and modifiers (causal, sliding_window, alibi, ...).
// They are written in the spec language itself, in a prelude shipped with
// heed; both frontends instantiate them from there, so each is defined once.
#ifndef HEED_FRONTEND_LIBRARY_H
#define HEED_FRONTEND_LIBRARY_H

#include "heed/Frontend/Spec.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

namespace heed::spec {

/// The prelude's source text.
llvm::StringRef preludeText();

/// An argument of a library call: an expression, or a buffer (by its position
/// in the variant's buffer list) for parameters of type `buffer`.
struct CallArg {
  ExprPtr expr;
  int buffer = -1;
  static CallArg ofExpr(ExprPtr e) { return {std::move(e), -1}; }
  static CallArg ofBuffer(int index) { return {nullptr, index}; }
};

/// Inlines library function `name` with `args` (type-checked against its
/// declaration; optional parameters take their defaults). `buffers` are the
/// variant's buffers, for buffer arguments.
llvm::Expected<ExprPtr> callLibrary(llvm::StringRef name,
                                    llvm::ArrayRef<CallArg> args,
                                    llvm::ArrayRef<BufferDecl> buffers);

} // namespace heed::spec

#endif // HEED_FRONTEND_LIBRARY_H
