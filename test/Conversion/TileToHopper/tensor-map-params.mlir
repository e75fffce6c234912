// RUN: heed-opt %s --heed-tensor-map-params --split-input-file --verify-diagnostics | FileCheck %s
// --heed-tensor-map-params: after convert-gpu-to-nvvm, the last parameters of
// a kernel with `heed.tensor_maps` (one per (argument, rows) pair) become
// 128-byte byval grid constants; the others, and kernels without the
// attribute, are left alone.

// CHECK-LABEL: llvm.func @k(
// CHECK-SAME: %arg0: !llvm.ptr, %arg1: i64,
// CHECK-SAME: %arg2: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant},
// CHECK-SAME: %arg3: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant})
// CHECK-LABEL: llvm.func @plain(
// CHECK-SAME: %arg0: !llvm.ptr)
// CHECK-NOT: grid_constant
gpu.module @heed_gpu {
  llvm.func @k(%q: !llvm.ptr, %n: i64, %qmap: !llvm.ptr, %kmap: !llvm.ptr) attributes {heed.tensor_maps = array<i64: 0, 64, 1, 32>, nvvm.kernel} {
    llvm.return
  }
  llvm.func @plain(%p: !llvm.ptr) attributes {nvvm.kernel} {
    llvm.return
  }
}

// -----

gpu.module @heed_gpu {
  // expected-error @+1 {{has 2 tensor maps but 1 parameters}}
  llvm.func @short(%p: !llvm.ptr) attributes {heed.tensor_maps = array<i64: 0, 64, 1, 32>, nvvm.kernel} {
    llvm.return
  }
}
