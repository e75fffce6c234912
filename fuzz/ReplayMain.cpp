// heed-fuzz-replay: runs files through the fuzz target's entry point
// (LLVMFuzzerTestOneInput) without libFuzzer, so the default build replays the
// seed corpus and the committed crash reproducers as a test.
//
//   heed-fuzz-replay [--list-from=FILE --root=DIR] [--write-seeds=DIR] [PATH...]
//
// Each PATH is a file or a folder (its *.attn files, not recursively).
// --list-from names a file of folders (fuzz/seed-dirs.txt), relative to
// --root. A file with lit `#--- NAME` sections is run whole and also section
// by section. --write-seeds writes every input into DIR instead of running it
// (fuzz/run.sh builds libFuzzer's seed corpus with it). With
// HEED_FUZZ_ALL_CONFIGS=1 (as the test sets it) each input is compiled under
// every kernel configuration the target knows, not the one its hash picks.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

namespace {

namespace fs = std::filesystem;

struct Input {
  std::string name;
  std::string text;
};

bool readFile(const fs::path &path, std::string &out) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  std::ostringstream s;
  s << in.rdbuf();
  out = s.str();
  return true;
}

/// The whole file, then each `#--- NAME` section of it.
void addFile(const fs::path &path, std::vector<Input> &inputs) {
  std::string text;
  if (!readFile(path, text)) {
    std::fprintf(stderr, "heed-fuzz-replay: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  inputs.push_back({path.string(), text});
  std::string section, name;
  std::istringstream lines(text);
  bool inSection = false;
  auto flush = [&] {
    if (inSection)
      inputs.push_back({path.string() + ":" + name, section});
  };
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("#--- ", 0) == 0) {
      flush();
      inSection = true;
      name = line.substr(5);
      section.clear();
      continue;
    }
    section += line + "\n";
  }
  flush();
}

void addPath(const fs::path &path, std::vector<Input> &inputs) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    addFile(path, inputs);
    return;
  }
  std::vector<fs::path> files;
  for (const fs::directory_entry &e : fs::directory_iterator(path, ec))
    if (e.is_regular_file() && e.path().extension() == ".attn")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const fs::path &f : files)
    addFile(f, inputs);
}

} // namespace

int main(int argc, char **argv) {
  std::vector<Input> inputs;
  std::string listFrom, root = ".", writeSeeds;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--list-from=", 0) == 0)
      listFrom = a.substr(12);
    else if (a.rfind("--root=", 0) == 0)
      root = a.substr(7);
    else if (a.rfind("--write-seeds=", 0) == 0)
      writeSeeds = a.substr(14);
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "heed-fuzz-replay: unknown option %s\n", a.c_str());
      return 2;
    } else
      paths.push_back(a);
  }
  if (!listFrom.empty()) {
    std::string list;
    if (!readFile(listFrom, list)) {
      std::fprintf(stderr, "heed-fuzz-replay: cannot read %s\n", listFrom.c_str());
      return 2;
    }
    std::istringstream lines(list);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty() && line[0] != '#' && fs::exists(fs::path(root) / line))
        paths.push_back((fs::path(root) / line).string());
  }
  for (const std::string &p : paths)
    addPath(p, inputs);
  if (inputs.empty()) {
    std::fprintf(stderr, "heed-fuzz-replay: no input (give files, folders or --list-from)\n");
    return 2;
  }

  if (!writeSeeds.empty()) {
    fs::create_directories(writeSeeds);
    for (size_t i = 0; i < inputs.size(); ++i) {
      std::ofstream out(fs::path(writeSeeds) / ("seed-" + std::to_string(i) + ".attn"),
                        std::ios::binary);
      out << inputs[i].text;
    }
    std::printf("wrote %zu seeds to %s\n", inputs.size(), writeSeeds.c_str());
    return 0;
  }

  auto start = std::chrono::steady_clock::now();
  for (const Input &in : inputs) {
    // Named first: if the input crashes, the last line says which.
    std::fprintf(stderr, "replay %s\n", in.name.c_str());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>(in.text.data()), in.text.size());
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("replayed %zu inputs in %.2f s: no crash\n", inputs.size(), seconds);
  return 0;
}
