// From an LLVM module to a loadable shared object: packed entry points the
// runtime calls without knowing each kernel's signature, and the link with
// ld.lld.
#include "KernelModule.h"

#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

namespace heed::detail {

void addPackedWrappers(llvm::Module &module) {
  llvm::LLVMContext &ctx = module.getContext();
  llvm::StringRef prefix = "_mlir_ciface_";
  std::vector<llvm::Function *> targets;
  for (llvm::Function &f : module)
    if (!f.isDeclaration() && f.getName().starts_with(prefix))
      targets.push_back(&f);
  auto *ptrType = llvm::PointerType::get(ctx, 0);
  for (llvm::Function *f : targets) {
    std::string name = "heed_packed_" + f->getName().drop_front(prefix.size()).str();
    auto *type = llvm::FunctionType::get(llvm::Type::getVoidTy(ctx), {ptrType}, false);
    auto *wrapper =
        llvm::Function::Create(type, llvm::GlobalValue::ExternalLinkage, name, module);
    llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", wrapper));
    // args[i] points at the value of parameter i (for memrefs: at the
    // pointer to the descriptor), as in MLIR's ExecutionEngine.
    std::vector<llvm::Value *> values;
    for (auto [i, param] : llvm::enumerate(f->args())) {
      llvm::Value *slot = b.CreateConstGEP1_64(ptrType, wrapper->getArg(0), i);
      llvm::Value *where = b.CreateLoad(ptrType, slot);
      values.push_back(b.CreateLoad(param.getType(), where));
    }
    llvm::Value *result = b.CreateCall(f, values);
    if (!f->getReturnType()->isVoidTy()) {
      llvm::Value *slot = b.CreateConstGEP1_64(ptrType, wrapper->getArg(0), f->arg_size());
      b.CreateStore(result, b.CreateLoad(ptrType, slot));
    }
    b.CreateRetVoid();
  }
}

namespace {

llvm::Error fail(std::string msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg);
}

/// Removes the files it was given when it goes out of scope.
struct TempFiles {
  std::vector<llvm::SmallString<128>> paths;
  ~TempFiles() {
    for (auto &p : paths)
      llvm::sys::fs::remove(p);
  }
};

} // namespace

llvm::Expected<std::string> findLinker() {
  static const std::string found = [] {
    for (const char *name : {"ld.lld", "ld.lld-22"}) {
      if (auto p = llvm::sys::findProgramByName(name, {HEED_LLVM_TOOLS_DIR}))
        return *p;
      if (auto p = llvm::sys::findProgramByName(name))
        return *p;
    }
    return std::string();
  }();
  if (found.empty())
    return fail("cannot find ld.lld (looked in " HEED_LLVM_TOOLS_DIR
                " and on PATH): install lld-22 to build CPU kernels");
  return found;
}

llvm::Expected<std::string> linkSharedObject(llvm::StringRef object) {
  auto linker = findLinker();
  if (!linker)
    return linker.takeError();
  TempFiles temps;
  temps.paths.resize(3);
  int fd = -1;
  if (auto ec = llvm::sys::fs::createTemporaryFile("heed-kernel", "o", fd, temps.paths[0]))
    return fail("cannot create a temporary object file: " + ec.message());
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << object;
    os.flush();
    if (os.has_error()) { // a full disk, a file size limit: an error, not an abort
      std::string why = os.error().message();
      os.clear_error();
      return fail("cannot write the temporary object file " + temps.paths[0].str().str() + ": " +
                  why);
    }
  }
  if (auto ec = llvm::sys::fs::createTemporaryFile("heed-kernel", "so", temps.paths[1]))
    return fail("cannot create a temporary file: " + ec.message());
  if (auto ec = llvm::sys::fs::createTemporaryFile("heed-link", "log", temps.paths[2]))
    return fail("cannot create a temporary file: " + ec.message());
  std::string out = temps.paths[1].str().str(), log = temps.paths[2].str().str();
  // No soname: every kernel must load as its own library, even under one
  // name. Kernels call nothing but memset from the C library (math is
  // inlined), which the loading process always has.
  llvm::SmallVector<llvm::StringRef> args = {*linker,  "-shared", "--hash-style=gnu",
                                             "-z",     "noexecstack", "--strip-all",
                                             "-o",     out,        temps.paths[0].str()};
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, llvm::StringRef(log),
                                                llvm::StringRef(log)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*linker, args, std::nullopt, redirects, 0, 0, &message);
  if (rc != 0) {
    std::string detail;
    if (auto buf = llvm::MemoryBuffer::getFile(log))
      detail = (*buf)->getBuffer().str();
    return fail(fmt::format("linking the kernel with {} failed ({}): {}{}", *linker, rc,
                            message, detail));
  }
  auto buf = llvm::MemoryBuffer::getFile(out);
  if (!buf)
    return fail("cannot read the linked kernel " + out + ": " + buf.getError().message());
  return (*buf)->getBuffer().str();
}

} // namespace heed::detail
