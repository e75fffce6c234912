// The PTX emulator's own checks (ptx_emulator.h), on small hand-written
// kernels: that it reports what it must (shared-memory races, collectives
// reached by part of a warp, accesses outside shared memory, a barrier not
// reached by all), that a cp.async copy lands only at its wait, and that
// mma.sync and ldmatrix compute what the PTX ISA's fragment tables say.
#include "ptx_emulator.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string &what) {
  std::printf("%s  %s\n", ok ? "ok    " : "FAILED", what.c_str());
  failures += !ok;
}

const char *kHeader = ".version 8.0\n.target sm_80\n.address_size 64\n"
                      ".extern .shared .align 16 .b8 smem[];\n";

/// Loads `body` as the entry `k` (one u64 parameter per pointer) and runs it;
/// "" on success, else the emulator's message.
std::string run(const std::string &params, const std::string &body, unsigned threads,
                unsigned sharedBytes, std::vector<void *> args) {
  std::string ptx = std::string(kHeader) + ".visible .entry k(" + params + ")\n{\n" +
                    "  .reg .pred %p<8>;\n  .reg .b32 %r<64>;\n  .reg .b64 %rd<32>;\n" + body +
                    "}\n";
  char err[1024] = "";
  void *m = ptxemu_load(ptx.c_str(), err, sizeof err);
  if (!m)
    return err;
  void *f = ptxemu_function(m, "k");
  unsigned grid[3] = {1, 1, 1}, block[3] = {threads, 1, 1};
  std::vector<void *> pointers;
  for (void *&a : args)
    pointers.push_back(&a);
  int rc = ptxemu_launch(f, grid, block, sharedBytes, pointers.data(), err, sizeof err);
  ptxemu_unload(m);
  return rc ? std::string(err) : "";
}

bool contains(const std::string &s, const char *what) { return s.find(what) != std::string::npos; }

uint16_t bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t(u >> 16); // exact for the small integers used here
}

} // namespace

int main() {
  const std::string oneParam = ".param .u64 out";
  // 1. Every thread writes shared word 0 in one barrier interval: a race.
  {
    std::string e = run(oneParam,
                        "  mov.u32 %r1, %tid.x;\n  mov.u64 %rd1, smem;\n"
                        "  st.shared.b32 [%rd1], %r1;\n  ret;\n",
                        64, 16, {nullptr});
    expect(contains(e, "shared memory race"), "a write-write race is reported: " + e);
  }
  // 1b. cvt to an integral value in the same float type (rmi, rzi, rni,
  //     rpi .f64.f64 and .f32.f32) rounds: the GPU backward's fixed-point
  //     adds were wrong while cvt.rmi.f64.f64 returned its input.
  {
    std::vector<double> out(8, 0);
    std::string e = run(oneParam,
                        "  .reg .f64 %fd<8>;\n  .reg .f32 %f<8>;\n"
                        "  ld.param.b64 %rd9, [out];\n"
                        "  mov.f64 %fd1, 0dC004000000000000;\n" // -2.5
                        "  cvt.rmi.f64.f64 %fd2, %fd1;\n  st.global.f64 [%rd9], %fd2;\n"
                        "  cvt.rzi.f64.f64 %fd3, %fd1;\n  st.global.f64 [%rd9+8], %fd3;\n"
                        "  cvt.rpi.f64.f64 %fd4, %fd1;\n  st.global.f64 [%rd9+16], %fd4;\n"
                        "  mov.f64 %fd5, 0d400C000000000000;\n" // 3.5
                        "  cvt.rni.f64.f64 %fd6, %fd5;\n  st.global.f64 [%rd9+24], %fd6;\n"
                        "  mov.f32 %f1, 0fC0200000;\n" // -2.5f
                        "  cvt.rmi.f32.f32 %f2, %f1;\n  cvt.f64.f32 %fd7, %f2;\n"
                        "  st.global.f64 [%rd9+32], %fd7;\n  ret;\n",
                        1, 0, {out.data()});
    expect(e.empty() && out[0] == -3.0 && out[1] == -2.0 && out[2] == -2.0 && out[3] == 4.0 &&
               out[4] == -3.0,
           "cvt.rmi/rzi/rpi/rni to an integral f64 and f32" + (e.empty() ? "" : ": " + e));
  }
  // 2. Each thread writes its word, bar.sync, reads its neighbour's: no race,
  //    and the values arrive.
  {
    std::vector<uint32_t> out(64, 0);
    std::string e = run(oneParam,
                        "  ld.param.b64 %rd9, [out];\n"
                        "  mov.u32 %r1, %tid.x;\n  mov.u64 %rd1, smem;\n"
                        "  mul.wide.u32 %rd2, %r1, 4;\n  add.s64 %rd3, %rd1, %rd2;\n"
                        "  st.shared.b32 [%rd3], %r1;\n  bar.sync 0;\n"
                        "  add.s32 %r2, %r1, 1;\n  rem.u32 %r2, %r2, 64;\n"
                        "  mul.wide.u32 %rd4, %r2, 4;\n  add.s64 %rd5, %rd1, %rd4;\n"
                        "  ld.shared.b32 %r3, [%rd5];\n"
                        "  add.s64 %rd6, %rd9, %rd2;\n  st.global.b32 [%rd6], %r3;\n  ret;\n",
                        64, 256, {out.data()});
    bool values = e.empty();
    for (unsigned i = 0; i < 64; ++i)
      values = values && out[i] == (i + 1) % 64;
    expect(values, "a barrier orders a neighbour's write and read" + (e.empty() ? "" : ": " + e));
  }
  // 3. The same without the barrier: a read-after-write race across warps.
  {
    std::vector<uint32_t> out(64, 0);
    std::string e = run(oneParam,
                        "  mov.u32 %r1, %tid.x;\n  mov.u64 %rd1, smem;\n"
                        "  mul.wide.u32 %rd2, %r1, 4;\n  add.s64 %rd3, %rd1, %rd2;\n"
                        "  st.shared.b32 [%rd3], %r1;\n"
                        "  add.s32 %r2, %r1, 32;\n  rem.u32 %r2, %r2, 64;\n"
                        "  mul.wide.u32 %rd4, %r2, 4;\n  add.s64 %rd5, %rd1, %rd4;\n"
                        "  ld.shared.b32 %r3, [%rd5];\n  ret;\n",
                        64, 256, {out.data()});
    expect(contains(e, "shared memory race"), "a missing barrier is reported: " + e);
  }
  // 4. cp.async: the copy lands at its wait; reading the destination before
  //    the wait is reported (the copy may land at any time until then).
  {
    std::vector<uint32_t> src = {0x11111111, 0x22222222, 0x33333333, 0x44444444};
    std::vector<uint32_t> out(2, 0);
    std::string params = ".param .u64 src, .param .u64 out";
    std::string issue = "  ld.param.b64 %rd1, [src];\n  ld.param.b64 %rd2, [out];\n"
                        "  mov.u64 %rd3, smem;\n"
                        "  cp.async.cg.shared.global [%rd3], [%rd1], 16;\n"
                        "  cp.async.commit_group;\n";
    std::string e = run(params,
                        issue + "  cp.async.wait_group 0;\n  ld.shared.b32 %r2, [%rd3+4];\n"
                                "  st.global.b32 [%rd2+4], %r2;\n  ret;\n",
                        1, 16, {src.data(), out.data()});
    expect(e.empty() && out[1] == 0x22222222u,
           "cp.async lands at cp.async.wait_group" + (e.empty() ? "" : ": " + e));
    e = run(params, issue + "  ld.shared.b32 %r1, [%rd3+4];\n  cp.async.wait_group 0;\n  ret;\n",
            1, 16, {src.data(), out.data()});
    expect(contains(e, "in flight"), "a read before cp.async.wait_group is reported: " + e);
    e = run(params, issue + "  ret;\n", 1, 16, {src.data(), out.data()});
    expect(contains(e, "never waited for"), "a copy never waited for is reported: " + e);
  }
  // 5. A collective reached by half a warp.
  {
    std::string e = run(oneParam,
                        "  mov.u32 %r1, %tid.x;\n  setp.lt.u32 %p1, %r1, 16;\n"
                        "  @%p1 shfl.sync.bfly.b32 %r2, %r1, 1, 31, -1;\n  ret;\n",
                        32, 0, {nullptr});
    expect(contains(e, "reached by 16 of the warp's lanes"),
           "a collective reached by part of a warp is reported: " + e);
  }
  // 6. Shared memory past the launch's bytes.
  {
    std::string e = run(oneParam,
                        "  mov.u64 %rd1, smem;\n  st.shared.b32 [%rd1+64], %r1;\n  ret;\n", 1,
                        64, {nullptr});
    expect(contains(e, "outside the block's 64 bytes"), "an access past shared memory: " + e);
  }
  // 7. Exited threads count as arrived at a barrier (as on the GPU); threads
  //    at two different bar.sync instructions are reported (bar.sync is
  //    .aligned).
  {
    std::string e = run(oneParam,
                        "  mov.u32 %r1, %tid.x;\n  setp.eq.u32 %p1, %r1, 3;\n  @%p1 ret;\n"
                        "  bar.sync 0;\n  ret;\n",
                        64, 0, {nullptr});
    expect(e.empty(), "a barrier after an exited thread releases" + (e.empty() ? "" : ": " + e));
    e = run(oneParam,
            "  mov.u32 %r1, %tid.x;\n  setp.lt.u32 %p1, %r1, 32;\n  @%p1 bra $L1;\n"
            "  bar.sync 0;\n  ret;\n$L1:\n  bar.sync 0;\n  ret;\n",
            64, 0, {nullptr});
    expect(contains(e, "different bar.sync instructions"),
           "threads at different bar.sync instructions: " + e);
  }
  // 7b. Misaligned accesses, global accesses outside every allocation,
  //     undeclared registers and unknown modifiers.
  {
    std::vector<uint32_t> buf(4, 0);
    ptxemu_allocation(buf.data(), buf.size() * 4, 1);
    std::string e = run(oneParam,
                        "  ld.param.b64 %rd1, [out];\n  st.global.b32 [%rd1+2], %r1;\n  ret;\n",
                        1, 0, {buf.data()});
    expect(contains(e, "misaligned"), "a misaligned store: " + e);
    e = run(oneParam, "  ld.param.b64 %rd1, [out];\n  st.global.b32 [%rd1+16], %r1;\n  ret;\n",
            1, 0, {buf.data()});
    expect(contains(e, "outside every device allocation"), "a store past an allocation: " + e);
    e = run(oneParam, "  ld.param.b64 %rd1, [out];\n  st.global.b32 [%rd1+12], %r1;\n  ret;\n",
            1, 0, {buf.data()});
    expect(e.empty(), "a store inside the allocation" + (e.empty() ? "" : ": " + e));
    ptxemu_allocation(buf.data(), 0, 0);
    e = run(oneParam, "  mov.u32 %q1, %tid.x;\n  ret;\n", 1, 0, {nullptr});
    expect(contains(e, "neither a declared register"), "an undeclared register: " + e);
    e = run(oneParam, "  max.relu.f32 %r1, %r2, %r3;\n  ret;\n", 1, 0, {nullptr});
    expect(contains(e, "modifier .relu"), "an unknown modifier: " + e);
    e = run(oneParam, "  add.s32 %r1, %r2, 5junk;\n  ret;\n", 1, 0, {nullptr});
    expect(contains(e, "cannot read the immediate"), "a malformed immediate: " + e);
  }
  // 7c. sm_90 synchronization: an mbarrier wait nobody completes is a
  //     deadlock; two warps through a named barrier of 64 threads and an
  //     mbarrier of 32 arrivals pass.
  {
    std::string wait = "  mov.u64 %rd1, smem;\n  mov.u32 %r1, %tid.x;\n  mov.b32 %r2, 32;\n"
                       "  setp.eq.u32 %p1, %r1, 0;\n"
                       "  @%p1 mbarrier.init.shared.b64 [%rd1], %r2;\n  bar.sync 0;\n";
    std::string spin = "$W:\n  mbarrier.try_wait.parity.shared.b64 %p2, [%rd1], 0;\n"
                       "  @!%p2 bra $W;\n  ret;\n";
    std::string e = run(oneParam, wait + spin, 64, 16, {nullptr});
    expect(contains(e, "deadlock"), "an mbarrier never completed is a deadlock: " + e);
    e = run(oneParam,
            wait + "  setp.lt.u32 %p3, %r1, 32;\n"
                   "  @%p3 mbarrier.arrive.shared.b64 %rd2, [%rd1];\n"
                   "  @%p3 bar.arrive 1, 64;\n  @!%p3 bar.sync 1, 64;\n" + spin,
            64, 16, {nullptr});
    expect(e.empty(), "an mbarrier's 32 arrivals and a named barrier release their waiters" +
                          (e.empty() ? "" : ": " + e));
  }
  // 7d. wgmma m64n8k16 (both operands from shared memory, K-major without
  //     swizzle: core matrices of 8 rows x 16 bytes, LBO 128 between the two
  //     along K, SBO 256 between 8-row groups) against a plain product, and a
  //     read of its accumulators before wgmma.wait_group reported.
  {
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> d(-3, 3);
    float A[64][16], B[8][16]; // B as N x K
    std::vector<uint16_t> image(1152, 0); // A: 2048 bytes, then B: 256
    for (int m = 0; m < 64; ++m)
      for (int k = 0; k < 16; ++k) {
        A[m][k] = float(d(rng));
        image[size_t(((m / 8) * 256 + (m % 8) * 16 + (k / 8) * 128 + (k % 8) * 2) / 2)] =
            bf16(A[m][k]);
      }
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < 16; ++k) {
        B[n][k] = float(d(rng));
        image[size_t((2048 + (n % 8) * 16 + (k / 8) * 128 + (k % 8) * 2) / 2)] = bf16(B[n][k]);
      }
    std::vector<float> out(128 * 4, 0);
    std::string params = ".param .u64 img, .param .u64 out";
    std::string stage =
        "  ld.param.b64 %rd1, [img];\n  ld.param.b64 %rd2, [out];\n  mov.u64 %rd3, smem;\n"
        "  mov.u32 %r1, %tid.x;\n  mul.wide.u32 %rd4, %r1, 16;\n"
        "  add.s64 %rd5, %rd1, %rd4;\n  ld.global.v4.b32 {%r2, %r3, %r4, %r5}, [%rd5];\n"
        "  add.s64 %rd6, %rd3, %rd4;\n  st.shared.v4.b32 [%rd6], {%r2, %r3, %r4, %r5};\n"
        "  setp.lt.u32 %p1, %r1, 16;\n"
        "  @%p1 ld.global.v4.b32 {%r2, %r3, %r4, %r5}, [%rd5+2048];\n"
        "  @%p1 st.shared.v4.b32 [%rd6+2048], {%r2, %r3, %r4, %r5};\n"
        "  bar.sync 0;\n  fence.proxy.async.shared::cta;\n"
        "  shr.u64 %rd7, %rd3, 4;\n  and.b64 %rd7, %rd7, 16383;\n"
        "  or.b64 %rd8, %rd7, 68720001024;\n" // LBO 128 (8 << 16), SBO 256 (16 << 32)
        "  add.s64 %rd9, %rd8, 128;\n"       // B: 2048 bytes on
        "  setp.ne.b32 %p2, 0, 0;\n  wgmma.fence.sync.aligned;\n"
        "  wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%r10, %r11, %r12, %r13},"
        " %rd8, %rd9, %p2, 1, 1, 0, 0;\n"
        "  wgmma.commit_group.sync.aligned;\n";
    std::string store = "  mul.wide.u32 %rd10, %r1, 16;\n  add.s64 %rd11, %rd2, %rd10;\n"
                        "  st.global.v4.b32 [%rd11], {%r10, %r11, %r12, %r13};\n  ret;\n";
    std::string e = run(params, stage + "  wgmma.wait_group.sync.aligned 0;\n" + store, 128,
                        2304, {image.data(), out.data()});
    bool ok = e.empty();
    for (int l = 0; l < 128 && ok; ++l)
      for (int i = 0; i < 4; ++i) {
        int w = l / 32, g = (l % 32) / 4, t = l % 4;
        int row = 16 * w + g + 8 * (i >= 2), col = 2 * t + (i & 1);
        float want = 0;
        for (int k = 0; k < 16; ++k)
          want += A[row][k] * B[col][k];
        ok = ok && out[size_t(l * 4 + i)] == want;
      }
    expect(ok, "wgmma m64n8k16 from shared-memory descriptors" + (e.empty() ? "" : ": " + e));
    e = run(params, stage + store, 128, 2304, {image.data(), out.data()});
    expect(contains(e, "before the wgmma.wait_group"),
           "reading wgmma accumulators before wgmma.wait_group is reported: " + e);
    e = run(params,
            stage + "  @%p1 st.shared.b32 [%rd6], %r1;\n  wgmma.wait_group.sync.aligned 0;\n" +
                store,
            128, 2304, {image.data(), out.data()});
    expect(contains(e, "a pending wgmma reads"),
           "overwriting a wgmma operand before wgmma.wait_group is reported: " + e);
    // The operands written by st.shared (the generic proxy) and read by
    // wgmma (the async proxy) with no fence.proxy.async between.
    std::string unfenced = stage;
    unfenced.erase(unfenced.find("  fence.proxy.async.shared::cta;\n"),
                   std::string("  fence.proxy.async.shared::cta;\n").size());
    e = run(params, unfenced + "  wgmma.wait_group.sync.aligned 0;\n" + store, 128, 2304,
            {image.data(), out.data()});
    expect(contains(e, "wgmma reads shared byte") && contains(e, "no fence.proxy.async"),
           "a wgmma reading st.shared bytes with no proxy fence between is reported: " + e);
  }
  // 8. mma.sync m16n8k16 bf16 on random integer matrices, fragments loaded
  //    from arrays laid out by the ISA's tables, against a plain product; and
  //    ldmatrix .x4 / .x2.trans of a 16x16 tile in shared memory giving the
  //    same A and B fragments.
  {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> d(-4, 4);
    float A[16][16], B[16][8], C[16][8];
    for (auto &row : A)
      for (float &x : row)
        x = float(d(rng));
    for (auto &row : B)
      for (float &x : row)
        x = float(d(rng));
    for (auto &row : C)
      for (float &x : row)
        x = float(d(rng));
    // Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
    // point type"): a_i: row g + 8 * (i % 4 >= 2), col 2 t + i % 2 + 8 * (i >= 4);
    // b_i: row 2 t + i % 2 + 8 * (i >= 2), col g; c_i: row g + 8 * (i >= 2),
    // col 2 t + i % 2 (g = lane / 4, t = lane % 4).
    std::vector<uint16_t> a(32 * 8), b(32 * 4);
    std::vector<float> c(32 * 4), out(32 * 4, 0), outLd(32 * 4, 0);
    for (int l = 0; l < 32; ++l) {
      int g = l / 4, t = l % 4;
      for (int i = 0; i < 8; ++i)
        a[size_t(l * 8 + i)] = bf16(A[g + 8 * ((i % 4) >= 2)][2 * t + i % 2 + 8 * (i >= 4)]);
      for (int i = 0; i < 4; ++i)
        b[size_t(l * 4 + i)] = bf16(B[2 * t + i % 2 + 8 * (i >= 2)][g]);
      for (int i = 0; i < 4; ++i)
        c[size_t(l * 4 + i)] = C[g + 8 * (i >= 2)][2 * t + i % 2];
    }
    // Row-major A (16 x 16) and B as a row-major K x N tile padded to 16
    // columns, for ldmatrix.
    std::vector<uint16_t> rowA(256), rowB(256, 0);
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j)
        rowA[size_t(i * 16 + j)] = bf16(A[i][j]);
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < 8; ++n)
        rowB[size_t(k * 16 + n)] = bf16(B[k][n]);
    std::string params = ".param .u64 pa, .param .u64 pb, .param .u64 pc, .param .u64 pd, "
                         ".param .u64 prow, .param .u64 prowb, .param .u64 pdl";
    std::string body =
        "  ld.param.b64 %rd1, [pa];\n  ld.param.b64 %rd2, [pb];\n  ld.param.b64 %rd3, [pc];\n"
        "  ld.param.b64 %rd4, [pd];\n  ld.param.b64 %rd20, [prow];\n"
        "  ld.param.b64 %rd21, [prowb];\n  ld.param.b64 %rd22, [pdl];\n"
        "  mov.u32 %r1, %tid.x;\n"
        "  mul.wide.u32 %rd5, %r1, 16;\n  add.s64 %rd6, %rd1, %rd5;\n"
        "  ld.global.v4.b32 {%r10, %r11, %r12, %r13}, [%rd6];\n"
        "  mul.wide.u32 %rd7, %r1, 8;\n  add.s64 %rd8, %rd2, %rd7;\n"
        "  ld.global.v2.b32 {%r14, %r15}, [%rd8];\n"
        "  add.s64 %rd9, %rd3, %rd5;\n"
        "  ld.global.v4.b32 {%r16, %r17, %r18, %r19}, [%rd9];\n"
        "  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%r20, %r21, %r22, %r23},\n"
        "    {%r10, %r11, %r12, %r13}, {%r14, %r15}, {%r16, %r17, %r18, %r19};\n"
        "  add.s64 %rd10, %rd4, %rd5;\n"
        "  st.global.v4.b32 [%rd10], {%r20, %r21, %r22, %r23};\n"
        // Stage row-major A at smem[0..512) and B at smem[512..1024), 16
        // bytes a thread per tile.
        "  mov.u64 %rd11, smem;\n"
        "  add.s64 %rd12, %rd20, %rd5;\n  ld.global.v4.b32 {%r30, %r31, %r32, %r33}, [%rd12];\n"
        "  add.s64 %rd13, %rd11, %rd5;\n  st.shared.v4.b32 [%rd13], {%r30, %r31, %r32, %r33};\n"
        "  add.s64 %rd14, %rd21, %rd5;\n  ld.global.v4.b32 {%r34, %r35, %r36, %r37}, [%rd14];\n"
        "  add.s64 %rd15, %rd13, 512;\n  st.shared.v4.b32 [%rd15], {%r34, %r35, %r36, %r37};\n"
        "  bar.sync 0;\n"
        // ldmatrix.x4 of A: matrix j = (rows 8 (j % 2).., cols 8 (j / 2)..):
        // lane l gives row (l % 16), column block (l / 16).
        "  and.b32 %r40, %r1, 15;\n  shr.u32 %r41, %r1, 4;\n"
        "  mul.wide.u32 %rd16, %r40, 32;\n  mul.wide.u32 %rd17, %r41, 16;\n"
        "  add.s64 %rd18, %rd11, %rd16;\n  add.s64 %rd18, %rd18, %rd17;\n"
        "  ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r42, %r43, %r44, %r45}, [%rd18];\n"
        // ldmatrix.x2.trans of B (K x N row-major): matrices k 0..7 and 8..15.
        "  mul.wide.u32 %rd19, %r40, 32;\n  add.s64 %rd23, %rd11, 512;\n"
        "  add.s64 %rd23, %rd23, %rd19;\n"
        "  ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%r46, %r47}, [%rd23];\n"
        "  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%r50, %r51, %r52, %r53},\n"
        "    {%r42, %r43, %r44, %r45}, {%r46, %r47}, {%r16, %r17, %r18, %r19};\n"
        "  add.s64 %rd24, %rd22, %rd5;\n"
        "  st.global.v4.b32 [%rd24], {%r50, %r51, %r52, %r53};\n  ret;\n";
    std::string e = run(params, body, 32, 1024,
                        {a.data(), b.data(), c.data(), out.data(), rowA.data(), rowB.data(),
                         outLd.data()});
    bool direct = e.empty(), viaLdmatrix = e.empty();
    for (int l = 0; l < 32 && e.empty(); ++l)
      for (int i = 0; i < 4; ++i) {
        int row = l / 4 + 8 * (i >= 2), col = 2 * (l % 4) + i % 2;
        float want = C[row][col];
        for (int k = 0; k < 16; ++k)
          want += A[row][k] * B[k][col];
        direct = direct && out[size_t(l * 4 + i)] == want;
        viaLdmatrix = viaLdmatrix && outLd[size_t(l * 4 + i)] == want;
      }
    expect(direct, "mma.sync m16n8k16 bf16 with the ISA's fragments" + (e.empty() ? "" : ": " + e));
    expect(viaLdmatrix, "ldmatrix .x4 and .x2.trans give mma's fragments");
  }
  // Immediates in a store's vector ({0, 0, 0, 0}: the wgmma kernel clears
  // V's rows past a ragged entry so) store their bits; in any other
  // instruction's vector they are refused at load.
  {
    std::vector<uint32_t> out = {7, 7, 7, 7, 7};
    std::string e = run(oneParam,
                        "  ld.param.b64 %rd9, [out];\n"
                        "  st.global.v4.b32 [%rd9], {0, 5, 0, -1};\n  ret;\n",
                        1, 0, {out.data()});
    expect(e.empty() && out[0] == 0 && out[1] == 5 && out[2] == 0 && out[3] == 0xffffffffu &&
               out[4] == 7,
           "st.v4 of immediates" + (e.empty() ? "" : ": " + e));
    e = run(oneParam, "  mov.b64 %rd1, {1, %r2};\n  ret;\n", 1, 0, {nullptr});
    expect(contains(e, "an immediate in a vector operand"),
           "an immediate in another instruction's vector is refused: " + e);
  }
  std::printf("%d failed\n", failures);
  return failures ? 1 : 0;
}
