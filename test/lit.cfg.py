# lit configuration for heed's FileCheck tests.
import os
import lit.formats
from lit.llvm import llvm_config

config.name = "heed"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".attn", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.heed_obj_root, "test")

config.substitutions.append(("%heed_src", config.heed_src_root))
config.substitutions.append(("%examples", os.path.join(config.heed_src_root, "examples")))

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.heed_tools_dir, append_path=True)
tools = ["heed-opt", "heed-compile", "heed-run", "heed-cache", "FileCheck", "not", "count",
         "llvm-readobj", "llvm-objdump"]
llvm_config.add_tool_substitutions(tools, [config.heed_tools_dir, config.llvm_tools_dir])

# Tests never touch the user's kernel cache: they get one under the build dir.
config.environment["HEED_CACHE_DIR"] = os.path.join(config.heed_obj_root, "test-cache")
# A forced split-KV count (docs/decode.md) reaches the kernels under test, so
# the whole suite can run with every work item split: HEED_SPLIT_KV=3 lit ...
if "HEED_SPLIT_KV" in os.environ:
    config.environment["HEED_SPLIT_KV"] = os.environ["HEED_SPLIT_KV"]

# Long checks (minutes each on two cores) stay out of the default run, which CI
# keeps under its time budget: HEED_LONG_TESTS=1 lit ... runs them too (lit
# lists them UNSUPPORTED otherwise; docs/testing.md, "Long checks").
if os.environ.get("HEED_LONG_TESTS") == "1":
    config.available_features.add("long-tests")

# ptxas (the CUDA toolkit) makes cubins; without it, PTX tests still run.
import shutil
if shutil.which("ptxas") or os.path.exists("/usr/local/cuda/bin/ptxas") or \
   os.environ.get("HEED_PTXAS") or os.environ.get("CUDA_HOME"):
    config.available_features.add("ptxas")
for name in ("CUDA_HOME", "HEED_PTXAS"):
    if name in os.environ:
        config.environment[name] = os.environ[name]

# ld.lld links AMD code objects (HSACO); without it, AMDGCN tests still run.
if os.path.exists(os.path.join(config.llvm_tools_dir, "ld.lld")) or shutil.which("ld.lld") or \
   os.environ.get("HEED_LLD"):
    config.available_features.add("lld")
if "HEED_LLD" in os.environ:
    config.environment["HEED_LLD"] = os.environ["HEED_LLD"]
