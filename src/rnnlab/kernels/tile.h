// The per-step matrix product, blocked for registers, with the cell's pointwise step fused
// into its epilogue.
//
// C (rows × columns) = init + A (rows × K) · P, where P is the weight, packed once per call
// into panels of NV·L columns (K × NV·L each, zero beyond the last unit). A tile is MR rows of
// one panel: MR × NV accumulators live in vector registers for the whole K loop, then the
// cell's `finish` turns them into the step's outputs (gates, c_t, h_t or ∂L/∂a_t) while they
// are still in registers. So a step is one pass over its rows: no intermediate product in
// memory, no per-op dispatch. The product is summed from zero and `init` added after it (as
// BLAS's y + A·P does): summing from init was measured to double the float32 rounding error.
#pragma once

#include "vecmath.h"

namespace rnnlab {

template <typename T, int MR, int NV, class Cell>
inline void tile(Cell& cell, int64_t r0, int64_t j, const T* a, int64_t lda, const T* p,
                 int64_t K) {
  using V = Vec<T>;
  constexpr int L = V::size();
  // acc is only ever indexed by unrolled constants and never escapes (the cell sees a copy):
  // the compiler keeps it in registers
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = V(T(0));
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = V::loadu(p + (k * NV + v) * L);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V x(a[r * lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = at::vec::fmadd(x, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    V out[NV];
    cell.init(r0 + r, j, out);
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) out[v] = out[v] + acc[r][v];
    cell.finish(r0 + r, j, out);
  }
}

// Rows [rb, re) of one step: every panel, full MR-row tiles, then tiles of 4, 2, 1 rows.
// a: row rb of the product's left operand (row stride lda); p: the packed weight.
template <typename T, class Cell>
void step_pass(Cell& cell, int64_t rb, int64_t re, const T* a, int64_t lda, const T* p,
               int64_t K, int64_t panels) {
  constexpr int MR = Cell::MR, NV = Cell::NV, L = Vec<T>::size();
  for (int64_t j = 0; j < panels; ++j) {  // panel outside: its weights stay in cache
    const T* pj = p + j * K * NV * L;
    int64_t r = rb;
    for (; r + MR <= re; r += MR) tile<T, MR, NV>(cell, r, j, a + (r - rb) * lda, lda, pj, K);
    while (r < re) {
      const int64_t left = re - r;
      const T* ar = a + (r - rb) * lda;
      if (left >= 4) {
        tile<T, 4, NV>(cell, r, j, ar, lda, pj, K);
        r += 4;
      } else if (left >= 2) {
        tile<T, 2, NV>(cell, r, j, ar, lda, pj, K);
        r += 2;
      } else {
        tile<T, 1, NV>(cell, r, j, ar, lda, pj, K);
        r += 1;
      }
    }
  }
}

// Packed weights. Forward, a = W_hh h_{t-1}: panel j holds, for k < H, the NG gates' rows of
// W_hh for UV unit vectors: P[j][k][(q·UV + uv)·L + c] = W_hh[q·H + u][k], u = (j·UV + uv)·L + c.
// So one tile holds every gate of the same units, which the cell's step needs together.
template <typename T, int NG, int UV>
void pack_forward(const T* w, int64_t H, T* p) {
  constexpr int L = Vec<T>::size(), NV = NG * UV;
  const int64_t panels = (H + UV * L - 1) / (UV * L);
  for (int64_t j = 0; j < panels; ++j)
    for (int64_t k = 0; k < H; ++k)
      for (int q = 0; q < NG; ++q)
        for (int uv = 0; uv < UV; ++uv)
          for (int c = 0; c < L; ++c) {
            const int64_t u = (j * UV + uv) * L + c;
            p[((j * H + k) * NV + q * UV + uv) * L + c] = u < H ? w[(q * H + u) * H + k] : T(0);
          }
}

// Backward, ∂L/∂h_{t-1} += ∂L/∂a_t W_hh: K = G = NG·H rows of W_hh, panel j its columns
// (units) for NV unit vectors: P[j][k][v·L + c] = W_hh[k][u], u = (j·NV + v)·L + c.
template <typename T, int NV>
void pack_backward(const T* w, int64_t G, int64_t H, T* p) {
  constexpr int L = Vec<T>::size();
  const int64_t panels = (H + NV * L - 1) / (NV * L);
  for (int64_t j = 0; j < panels; ++j)
    for (int64_t k = 0; k < G; ++k)
      for (int v = 0; v < NV; ++v)
        for (int c = 0; c < L; ++c) {
          const int64_t u = (j * NV + v) * L + c;
          p[((j * G + k) * NV + v) * L + c] = u < H ? w[k * H + u] : T(0);
        }
}

}  // namespace rnnlab
