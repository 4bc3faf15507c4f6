// Vector helpers for the step kernels: masked loads/stores, σ and tanh, gate statistics.
//
// Vec<T> is ATen's at::vec::Vectorized<T> at the widest SIMD the build targets (AVX-512:
// 16 floats or 8 doubles per register; the scalar fallback elsewhere). A "unit vector" is L
// consecutive hidden units; the last one of a row may hold fewer (n < L valid lanes).
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstdint>

namespace rnnlab {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// n valid lanes from p (the others read as 0)
template <typename T>
inline Vec<T> load(const T* p, int64_t n) {
  return n == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, n);
}

// the first n lanes of v to p
template <typename T>
inline void store(T* p, const Vec<T>& v, int64_t n) {
  v.store(p, n);
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {  // σ(x) = 1 / (1 + e^−x)
  const Vec<T> one(T(1));
  return one / (one + x.neg().exp());
}

template <typename T>
inline Vec<T> tanh(const Vec<T>& x) {  // tanh(x) = 2σ(2x) − 1 = 1 − 2 / (1 + e^2x)
  const Vec<T> one(T(1)), two(T(2));
  return one - two / (one + (x + x).exp());
}

template <typename T>
inline T hsum(const Vec<T>& v) {
  alignas(64) T buf[Vec<T>::size()];
  v.store(buf);
  T s = 0;
  for (int i = 0; i < Vec<T>::size(); ++i) s += buf[i];
  return s;
}

// Per-step gate statistics of one gate family: Σ v and the number of saturated values,
// |v − centre| > limit (telemetry.py's definition), over the lanes that hold a unit.
template <typename T, int NG>
struct GateStats {
  using V = Vec<T>;
  bool on = false;
  V centre[NG], limit[NG], sum[NG], sat[NG];

  void reset() {
    for (int q = 0; q < NG; ++q) sum[q] = sat[q] = V(T(0));
  }
  void add(int q, V v, int64_t n) {
    V s = (v - centre[q]).abs().gt(limit[q]);  // 1 where saturated, else 0
    if (n < V::size()) {
      v = V::set(V(T(0)), v, n);
      s = V::set(V(T(0)), s, n);
    }
    sum[q] = sum[q] + v;
    sat[q] = sat[q] + s;
  }
  void flush(T* out) {  // out: (2, NG) of one step
    for (int q = 0; q < NG; ++q) {
      out[q] += hsum(sum[q]);
      out[NG + q] += hsum(sat[q]);
    }
  }
};

}  // namespace rnnlab
