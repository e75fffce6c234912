// RUN: heed-opt %s --heed-approximate-math | FileCheck %s
// --heed-approximate-math: transcendental math ops on f32 scalars and
// vectors become polynomial approximations (no libm call per element).

// CHECK-LABEL: func.func @vector_exp
// CHECK-NOT: math.exp
// CHECK: math.fma
// CHECK: return
func.func @vector_exp(%x: vector<16xf32>) -> vector<16xf32> {
  %y = math.exp %x : vector<16xf32>
  return %y : vector<16xf32>
}

// CHECK-LABEL: func.func @scalar_ops
// CHECK-NOT: math.tanh
// CHECK-NOT: math.log
// CHECK: return
func.func @scalar_ops(%x: f32) -> (f32, f32) {
  %t = math.tanh %x : f32
  %l = math.log %x : f32
  return %t, %l : f32, f32
}

// f64 is left alone: the approximations are for f32.
// CHECK-LABEL: func.func @f64_untouched
// CHECK: math.exp %{{.*}} : f64
func.func @f64_untouched(%x: f64) -> f64 {
  %y = math.exp %x : f64
  return %y : f64
}
