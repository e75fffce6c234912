// RUN: heed-opt %s --heed-extern-dynamic-shared --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(heed-extern-dynamic-shared,gpu.module(convert-gpu-to-nvvm))' | FileCheck %s --check-prefix=LOWERED

// After convert-gpu-to-nvvm: the internal zero-length shared global the
// lowering made becomes an external declaration (PTX `.extern .shared`);
// a shared array with a size, and a zero-length array of another address
// space, stay as they are.
// CHECK-LABEL: gpu.module @after_lowering
// CHECK-DAG: llvm.mlir.global external @__dynamic_shmem__0() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
// CHECK-DAG: llvm.mlir.global internal @tile() {addr_space = 3 : i32} : !llvm.array<64 x f32>
// CHECK-DAG: llvm.mlir.global internal @global_zero() {addr_space = 1 : i32} : !llvm.array<0 x i8>
// CHECK-NOT: llvm.mlir.global
// CHECK: llvm.func @kernel
// CHECK: llvm.mlir.addressof @__dynamic_shmem__0
gpu.module @after_lowering {
  llvm.mlir.global internal @__dynamic_shmem__0() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
  llvm.mlir.global internal @tile() {addr_space = 3 : i32} : !llvm.array<64 x f32>
  llvm.mlir.global internal @global_zero() {addr_space = 1 : i32} : !llvm.array<0 x i8>
  llvm.func @kernel() -> !llvm.ptr<3> {
    %0 = llvm.mlir.addressof @__dynamic_shmem__0 : !llvm.ptr<3>
    llvm.return %0 : !llvm.ptr<3>
  }
}

// -----

// Before convert-gpu-to-nvvm: the module gets the external declaration, and
// the lowering addresses it instead of making an internal global of its own.
// CHECK-LABEL: gpu.module @before_lowering
// CHECK: llvm.mlir.global external @__dynamic_shmem__0() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
// CHECK: gpu.dynamic_shared_memory
// LOWERED-LABEL: gpu.module @before_lowering
// LOWERED: llvm.mlir.global external @__dynamic_shmem__0() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
// LOWERED-NOT: llvm.mlir.global internal
// LOWERED: llvm.func @kernel
// LOWERED: llvm.mlir.addressof @__dynamic_shmem__0 : !llvm.ptr<3>
gpu.module @before_lowering {
  gpu.func @kernel(%out: memref<4xf32>) kernel {
    %c0 = arith.constant 0 : index
    %shared = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
    %tile = memref.view %shared[%c0][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<4xf32, #gpu.address_space<workgroup>>
    %v = memref.load %tile[%c0] : memref<4xf32, #gpu.address_space<workgroup>>
    memref.store %v, %out[%c0] : memref<4xf32>
    gpu.return
  }
}

// -----

// The upstream name is taken by something else: the declaration is renamed.
// CHECK-LABEL: gpu.module @name_taken
// CHECK: llvm.mlir.global external @__dynamic_shmem__0_{{[0-9]+}}() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>
// CHECK: llvm.func @__dynamic_shmem__0()
gpu.module @name_taken {
  llvm.func @__dynamic_shmem__0() {
    llvm.return
  }
  gpu.func @kernel() kernel {
    %shared = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
    gpu.return
  }
}

// -----

// No dynamic shared memory, nothing declared.
// CHECK-LABEL: gpu.module @no_shared
// CHECK-NOT: llvm.mlir.global
// CHECK: gpu.func @kernel
gpu.module @no_shared {
  gpu.func @kernel() kernel {
    gpu.return
  }
}

// -----

// A zero-length shared array with an initializer is not dynamic shared
// memory: an error, not a silently dropped value.
gpu.module @initialized {
  // expected-error @below {{a zero-length shared array with an initializer cannot be declared external}}
  llvm.mlir.global internal @zero() {addr_space = 3 : i32} : !llvm.array<0 x i8> {
    %0 = llvm.mlir.undef : !llvm.array<0 x i8>
    llvm.return %0 : !llvm.array<0 x i8>
  }
}
