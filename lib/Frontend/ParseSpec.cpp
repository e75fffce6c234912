// The textual frontend's entry points (Parser.h): read a spec file, parse,
// check and elaborate it, pick a variant.
#include "Elaborate.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <optional>

namespace heed::spec {
using namespace detail;
namespace {

llvm::Expected<std::vector<Variant>> parseAndElaborate(llvm::StringRef text,
                                                       llvm::StringRef filename,
                                                       const ParamOverrides &overrides) {
  llvm::SourceMgr sm;
  unsigned id =
      sm.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(text, filename), llvm::SMLoc());
  llvm::StringRef buffer = sm.getMemoryBuffer(id)->getBuffer();
  auto error = [&](const Failure &f) {
    return plainError(render(sm, filename, f));
  };

  Module module;
  if (std::optional<Failure> f = parseModule(buffer, module))
    return error(*f);
  const Module &prelude = preludeModule();
  if (std::optional<Failure> f = checkDefs(module, &prelude))
    return error(*f);
  if (module.variants.empty())
    return error({module.endLoc, "no variant in the file (expected 'variant NAME { ... }')"});

  Elaborator el({&prelude, &module});
  llvm::StringMap<llvm::SMLoc> variantNames;
  llvm::StringSet<> usedOverrides;
  std::vector<Variant> variants;
  for (const VariantDecl &decl : module.variants) {
    auto [it, fresh] = variantNames.try_emplace(decl.name, decl.loc);
    if (!fresh)
      return error({decl.loc, "variant '" + decl.name + "' is defined twice", {},
                    {{it->second, "first defined here"}}});
    Variant v;
    if (std::optional<Failure> f = elaborateVariant(el, decl, overrides, usedOverrides, v))
      return error(*f);
    variants.push_back(std::move(v));
  }
  for (const auto &[name, value] : overrides) {
    if (usedOverrides.contains(name))
      continue;
    std::vector<std::string> declared;
    for (const Variant &v : variants)
      for (const Param &p : v.params)
        declared.push_back(p.name);
    return error({llvm::SMLoc(),
                  "--param " + name + "=" + value + ": no variant in " + filename.str() +
                      " declares a param '" + name + "'" + didYouMean(name, declared)});
  }
  return variants;
}


} // namespace

llvm::Expected<std::vector<Variant>> parseSpec(llvm::StringRef text, llvm::StringRef filename,
                                               const ParamOverrides &overrides) {
  if (text.size() > kMaxSpecBytes)
    return plainError(filename + ": error: the spec is " + llvm::Twine(text.size()) +
                      " bytes; a spec may have at most " + llvm::Twine(kMaxSpecBytes) +
                      " bytes (1 MiB)\n");
  return parseAndElaborate(text, filename, overrides);
}

llvm::Expected<ParamOverrides> parseParamAssignments(llvm::ArrayRef<std::string> settings) {
  ParamOverrides overrides;
  for (const std::string &p : settings) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "--param expects name=value, got '" + p + "'");
    std::string name = p.substr(0, eq);
    for (const auto &[seen, value] : overrides)
      if (seen == name)
        return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                       "--param '" + name + "' is given twice (" + name + "=" +
                                           value + " and " + p + ")");
    overrides.emplace_back(std::move(name), p.substr(eq + 1));
  }
  return overrides;
}

llvm::Expected<std::vector<Variant>> parseSpecFile(llvm::StringRef path,
                                                   const ParamOverrides &overrides) {
  auto cannotRead = [&](const llvm::Twine &why) {
    return plainError("error: cannot read '" + path + "': " + why + "\n");
  };
  // Only a regular file of bounded size is read: a device (/dev/zero) would be
  // read until memory runs out, and opening a FIFO blocks until a writer comes.
  auto check = [&](const llvm::sys::fs::file_status &st) -> std::optional<llvm::Error> {
    if (st.type() == llvm::sys::fs::file_type::directory_file)
      return cannotRead("it is a directory");
    if (st.type() != llvm::sys::fs::file_type::regular_file)
      return cannotRead("not a regular file");
    if (st.getSize() > kMaxSpecBytes)
      return cannotRead("the file is " + llvm::Twine(st.getSize()) +
                        " bytes; a spec may have at most " + llvm::Twine(kMaxSpecBytes) +
                        " bytes (1 MiB)");
    return std::nullopt;
  };
  llvm::sys::fs::file_status st;
  if (std::error_code ec = llvm::sys::fs::status(path, st))
    return cannotRead(ec.message());
  if (std::optional<llvm::Error> err = check(st))
    return std::move(*err);
  llvm::Expected<llvm::sys::fs::file_t> file = llvm::sys::fs::openNativeFileForRead(path);
  if (!file)
    return cannotRead(llvm::toString(file.takeError()));
  auto closeFile = llvm::make_scope_exit([&] { llvm::sys::fs::closeFile(*file); });
  // The file may have been replaced since: check what was opened.
  if (std::error_code ec = llvm::sys::fs::status(*file, st))
    return cannotRead(ec.message());
  if (std::optional<llvm::Error> err = check(st))
    return std::move(*err);
  auto buffer = llvm::MemoryBuffer::getOpenFile(*file, path, st.getSize(),
                                                /*RequiresNullTerminator=*/false);
  if (!buffer)
    return cannotRead(buffer.getError().message());
  return parseSpec((*buffer)->getBuffer(), path, overrides);
}

llvm::Expected<Variant> selectVariant(std::vector<Variant> variants, llvm::StringRef name) {
  if (variants.empty())
    return plainError("no variant to choose from");
  std::string names;
  std::vector<std::string> candidates;
  for (const Variant &v : variants) {
    names += (names.empty() ? "" : ", ") + v.name;
    candidates.push_back(v.name);
  }
  if (name.empty()) {
    if (variants.size() == 1)
      return std::move(variants.front());
    return plainError("the file defines " + std::to_string(variants.size()) + " variants (" +
                      names + "): choose one with --variant");
  }
  for (Variant &v : variants)
    if (v.name == name)
      return std::move(v);
  return plainError("no variant '" + name + "'" + didYouMean(name, candidates) +
                    " (the file defines: " + names + ")");
}

} // namespace heed::spec
