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

// exp and 1/d for σ and tanh. With AVX-512: inline, e^x = 2^n · p(r), x = n ln2 + r, |r| ≤ ln2/2,
// p the Taylor polynomial (float: degree 6, double: 12; about 1 ulp), 2^n by vscalef (exact, and
// inf / 0 beyond the range); 1/d from the 14-bit estimate and Newton steps (one for float, two
// for double), d ≥ 1 here. Elsewhere: ATen's (Sleef) exp and a division.
#if defined(CPU_CAPABILITY_AVX512)
inline Vec<float> exp_(const Vec<float>& xv) {
  const __m512 x = xv;
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2, high bits
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);     // ln2, the rest
  __m512 p = _mm512_set1_ps(1.f / 720);
  for (float c : {1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}
inline Vec<double> exp_(const Vec<double>& xv) {
  const __m512d x = xv;
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0.6931471803691238), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.9082149292705877e-10), r);
  __m512d p = _mm512_set1_pd(1.0 / 479001600);  // 1/12!
  double c = 1.0 / 479001600;
  for (int k = 11; k >= 0; --k) {
    c *= k + 1;  // 1/k!
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c));
  }
  return _mm512_scalef_pd(p, n);
}
inline Vec<float> rcp_(const Vec<float>& dv) {
  const __m512 d = dv, e = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(e, _mm512_fnmadd_ps(d, e, _mm512_set1_ps(1.f)), e);  // e + e(1 − de)
}
inline Vec<double> rcp_(const Vec<double>& dv) {
  const __m512d d = dv, one = _mm512_set1_pd(1.0);
  __m512d e = _mm512_rcp14_pd(d);
  e = _mm512_fmadd_pd(e, _mm512_fnmadd_pd(d, e, one), e);
  return _mm512_fmadd_pd(e, _mm512_fnmadd_pd(d, e, one), e);
}
#else
template <typename T>
inline Vec<T> exp_(const Vec<T>& x) {
  return x.exp();
}
template <typename T>
inline Vec<T> rcp_(const Vec<T>& d) {
  return Vec<T>(T(1)) / d;
}
#endif

// e^x for x ≤ the limit stays finite, so 1 / (1 + e^x) never meets ∞ (NaN stays NaN)
template <typename T>
inline Vec<T> exp_finite(const Vec<T>& x) {
  return exp_(at::vec::clamp_max(x, Vec<T>(T(sizeof(T) == 4 ? 88 : 709))));
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {  // σ(x) = 1 / (1 + e^−x)
  return rcp_(Vec<T>(T(1)) + exp_finite(x.neg()));
}

template <typename T>
inline Vec<T> tanh(const Vec<T>& x) {  // tanh(x) = 1 − 2 / (1 + e^2x)
  const Vec<T> one(T(1));
  return one - Vec<T>(T(2)) * rcp_(one + exp_finite(x + x));
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
