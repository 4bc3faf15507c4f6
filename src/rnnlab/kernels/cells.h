// The cells' pointwise steps, as the epilogues of the per-step product (tile.h), in the
// notation of rnnlab/cells.py (gate orders: LSTM i, f, g, o; GRU r, z, n).
//
// Each cell is a struct the time loop points at one step (`to_step`), then calls per tile:
//   init(row, panel, acc)    the accumulators' starting values (the input part xw_t, b_hh, or
//                            the ∂L/∂h already collected for the step),
//   finish(row, panel, acc)  the step itself, from acc = init + the product.
// Forward cells write the gates (over xw_t), h_t, c_t and their auxiliary values into the same
// time-major buffers as the Python engine, and the gate statistics when asked. Backward cells
// take the total ∂L/∂h_t (acc) and write ∂L/∂a_t (hidden side Q, GRU input side too), the
// LSTM's ∂L/∂c_t, and, with `record`, the totals for the telemetry.
//
// `finish` copies what it needs of the struct into locals before its first store: ATen's vector
// types may alias anything, so a member read after a vector store would be read again.
#pragma once

#include "vecmath.h"

namespace rnnlab {

enum Mode : int64_t { RNN_TANH = 0, RNN_RELU = 1, LSTM = 2, GRU = 3 };

// Raw views of one call's buffers. Rows of B; h-like buffers (B, H) per slot, gates (B, G).
template <typename T>
struct Bufs {
  int64_t T_, B, H, G;
  bool reverse;
  T *A, *XW, *HS, *CS, *AUX;       // forward: gates (T,B,G); RNN input part; slots; aux (T,B,H)
  const T* b_hh;                    // GRU: b_hh (G) or null
  T *Q, *DIN, *DH, *DC, *dcarry;    // backward: ∂L/∂a (T,B,G); GRU input side; ∂L/∂h slots; ...
  T *dh0, *dc0;
  bool record;
  // step k (processing order) runs time t(k) and writes slot S(k); it reads slot S(k−1)
  int64_t t(int64_t k) const { return reverse ? T_ - 1 - k : k; }
  int64_t S(int64_t k) const { return reverse ? T_ - 1 - k : k + 1; }
  T* slot(T* base, int64_t s) const { return base + s * B * H; }
  T* step(T* base, int64_t t, int64_t width) const { return base + t * B * width; }
};

template <typename T>
inline int64_t valid(int64_t u, int64_t H) {  // valid lanes of the unit vector at u
  const int64_t n = H - u;
  return n < Vec<T>::size() ? n : Vec<T>::size();
}

// -- forward -------------------------------------------------------------------------------
template <typename T>
struct LstmForward {  // c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t)
  static constexpr int NG = 4, UV = 1, NV = 4, MR = 6;
  using V = Vec<T>;
  static constexpr int L = V::size();
  const Bufs<T>& b;
  GateStats<T, NG>& st;
  T *a, *c, *h, *tc;
  const T* cp;
  void to_step(int64_t k) {
    const int64_t t = b.t(k);
    a = b.step(b.A, t, b.G);
    tc = b.step(b.AUX, t, b.H);
    cp = b.slot(b.CS, b.S(k - 1));
    c = b.slot(b.CS, b.S(k));
    h = b.slot(b.HS, b.S(k));
  }
  void init(int64_t row, int64_t j, V* acc) {  // xw_t = W_ih x_t + b_ih + b_hh
    const int64_t u = j * L, n = valid<T>(u, b.H);
    for (int q = 0; q < NG; ++q) acc[q] = load(a + row * b.G + q * b.H + u, n);
  }
  void finish(int64_t row, int64_t j, V* acc) {
    const int64_t H = b.H, u = j * L, n = valid<T>(u, H), e = row * H + u;
    T *const ar = a + row * b.G + u, *const cr = c + e, *const tr = tc + e, *const hr = h + e;
    const V cpv = load(cp + e, n);
    const V i = sigmoid(acc[0]), f = sigmoid(acc[1]), g = tanh(acc[2]), o = sigmoid(acc[3]);
    const V cv = at::vec::fmadd(f, cpv, i * g);
    const V tcv = tanh(cv);
    store(ar, i, n);
    store(ar + H, f, n);
    store(ar + 2 * H, g, n);
    store(ar + 3 * H, o, n);
    store(cr, cv, n);
    store(tr, tcv, n);
    store(hr, o * tcv, n);
    if (st.on) {
      st.add(0, i, n);
      st.add(1, f, n);
      st.add(2, g, n);
      st.add(3, o, n);
    }
  }
};

template <typename T>
struct GruForward {  // n = tanh(xw_n + r ⊙ (W_hn h + b_hn)),  h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
  static constexpr int NG = 3, UV = 1, NV = 3, MR = 8;
  using V = Vec<T>;
  static constexpr int L = V::size();
  const Bufs<T>& b;
  GateStats<T, NG>& st;
  T *a, *h, *hn;
  const T* hp;
  void to_step(int64_t k) {
    const int64_t t = b.t(k);
    a = b.step(b.A, t, b.G);
    hn = b.step(b.AUX, t, b.H);
    hp = b.slot(b.HS, b.S(k - 1));
    h = b.slot(b.HS, b.S(k));
  }
  void init(int64_t, int64_t j, V* acc) {  // b_hh: the product gives W_hh h_{t-1} + b_hh
    const int64_t u = j * L, n = valid<T>(u, b.H);
    for (int q = 0; q < NG; ++q) acc[q] = b.b_hh ? load(b.b_hh + q * b.H + u, n) : V(T(0));
  }
  void finish(int64_t row, int64_t j, V* acc) {
    const int64_t H = b.H, u = j * L, n = valid<T>(u, H), e = row * H + u;
    T *const ar = a + row * b.G + u, *const nr = hn + e, *const hr = h + e;
    const V hpv = load(hp + e, n);
    const V r = sigmoid(load(ar, n) + acc[0]);  // ar: xw_t (b_ih included) on entry
    const V z = sigmoid(load(ar + H, n) + acc[1]);
    const V nv = tanh(at::vec::fmadd(r, acc[2], load(ar + 2 * H, n)));
    store(ar, r, n);
    store(ar + H, z, n);
    store(ar + 2 * H, nv, n);
    store(nr, acc[2], n);
    store(hr, at::vec::fmadd(z, hpv - nv, nv), n);  // n + z ⊙ (h_{t-1} − n)
    if (st.on) {
      st.add(0, r, n);
      st.add(1, z, n);
      st.add(2, nv, n);
    }
  }
};

template <typename T>
struct RnnForward {  // h_t = φ(xw_t + W_hh h_{t-1}), φ = tanh or relu
  static constexpr int NG = 1, UV = 2, NV = 2, MR = 8;
  using V = Vec<T>;
  static constexpr int L = V::size();
  const Bufs<T>& b;
  GateStats<T, NG>& st;
  bool relu;
  const T* xw;
  T* h;
  void to_step(int64_t k) {
    xw = b.step(b.XW, b.t(k), b.H);
    h = b.slot(b.HS, b.S(k));
  }
  void init(int64_t row, int64_t j, V* acc) {
    for (int v = 0; v < NV; ++v) {
      const int64_t u = (j * NV + v) * L;
      acc[v] = u < b.H ? load(xw + row * b.H + u, valid<T>(u, b.H)) : V(T(0));
    }
  }
  void finish(int64_t row, int64_t j, V* acc) {
    const int64_t H = b.H;
    T* const hr = h + row * H;
    const bool is_relu = relu, stats = st.on;
    for (int v = 0; v < NV; ++v) {
      const int64_t u = (j * NV + v) * L;
      if (u >= H) break;
      const int64_t n = valid<T>(u, H);
      const V hv = is_relu ? at::vec::clamp_min(acc[v], V(T(0))) : tanh(acc[v]);
      store(hr + u, hv, n);
      if (stats) st.add(0, hv, n);
    }
  }
};

// -- backward ------------------------------------------------------------------------------
// The pass of step k's product also runs step k−1's cell ("s" below): acc = ∂L/∂h_s in total
// (its local part, h_n's, and ∂L/∂a_{k} W_hh). Rows not active at s started at k (reverse
// direction, packed input): their acc is ∂L/∂h0 (and dcarry ∂L/∂c0).
template <typename T>
struct BackwardBase {
  static constexpr int UV = 2, NV = 2, MR = 8;
  using V = Vec<T>;
  static constexpr int L = V::size();
  const Bufs<T>& b;
  int64_t active = 0;  // rows active at step s
  int64_t t = -1;      // time of s
  T *dh = nullptr, *dhp = nullptr;  // ∂L/∂h slots of s (read: init) and of s−1
  // this pass: the product of step k, the cell of step s = k − 1; false: no cell (k = 0)
  bool base_to_step(int64_t k, int64_t active_rows) {
    active = active_rows;
    dh = b.slot(b.DH, b.S(k - 1));
    if (k < 1) return false;
    dhp = b.slot(b.DH, b.S(k - 2));
    t = b.t(k - 1);
    return true;
  }
  void init(int64_t row, int64_t j, V* acc) {
    for (int v = 0; v < NV; ++v) {
      const int64_t u = (j * NV + v) * L;
      acc[v] = u < b.H ? load(dh + row * b.H + u, valid<T>(u, b.H)) : V(T(0));
    }
  }
  // Each unit vector of a tile row: acc is the total ∂L/∂h_s; rows active at s run the cell's
  // step(u, n, e, dh) (e: the element offset row·H + u), rows that start at k leave ∂L/∂h0 and
  // ∂L/∂c0 (dcarry).
  template <class Step>
  void each(int64_t row, int64_t j, const V* acc, const Step& step) {
    const int64_t H = b.H;
    if (row >= active) {  // rows that start at k
      T *const dh0 = b.dh0, *const dc0 = b.dc0;
      const T* const dcarry = b.dcarry;
      for (int v = 0; v < NV; ++v) {
        const int64_t u = (j * NV + v) * L, e = row * H + u;
        if (u >= H) break;
        store(dh0 + e, acc[v], valid<T>(u, H));
        if (dc0) store(dc0 + e, load(dcarry + e, valid<T>(u, H)), valid<T>(u, H));
      }
      return;
    }
    T* const total = b.record ? dh : nullptr;
    for (int v = 0; v < NV; ++v) {
      const int64_t u = (j * NV + v) * L;
      if (u >= H) break;
      const int64_t n = valid<T>(u, H), e = row * H + u;
      if (total) store(total + e, acc[v], n);
      step(u, n, e, acc[v]);
    }
  }
};

template <typename T>
struct LstmBackward : BackwardBase<T> {
  using V = Vec<T>;
  using BackwardBase<T>::b;
  const T *a, *tc, *cp;
  T *q, *dc;
  void to_step(int64_t k, int64_t active) {
    if (!this->base_to_step(k, active)) return;
    a = b.step(b.A, this->t, b.G);
    q = b.step(b.Q, this->t, b.G);
    tc = b.step(b.AUX, this->t, b.H);
    dc = b.DC ? b.step(b.DC, this->t, b.H) : nullptr;
    cp = b.slot(b.CS, b.S(k - 2));
  }
  void finish(int64_t row, int64_t j, V* acc) {
    const int64_t H = b.H;
    const T *const ar = a + row * b.G, *const tcr = tc, *const cpr = cp;
    T *const qr = q + row * b.G, *const dcr = dc, *const carry = b.dcarry;
    const V one(T(1));
    this->each(row, j, acc, [&](int64_t u, int64_t n, int64_t e, const V& dh) {
      const V i = load(ar + u, n), f = load(ar + H + u, n), g = load(ar + 2 * H + u, n),
              o = load(ar + 3 * H + u, n), tcv = load(tcr + e, n), cpv = load(cpr + e, n);
      // ∂L/∂c_t = from c_{t+1} + ∂L/∂h_t ⊙ o ⊙ (1 − tanh²(c_t))
      const V dcv = at::vec::fmadd(dh * o, one - tcv * tcv, load(carry + e, n));
      store(qr + u, dcv * g * i * (one - i), n);              // ∂L/∂a_i
      store(qr + H + u, dcv * cpv * f * (one - f), n);        // ∂L/∂a_f
      store(qr + 2 * H + u, dcv * i * (one - g * g), n);      // ∂L/∂a_g
      store(qr + 3 * H + u, dh * tcv * o * (one - o), n);     // ∂L/∂a_o
      store(carry + e, dcv * f, n);  // ∂c_t/∂c_{t-1} = f_t: the cell-state highway
      if (dcr) store(dcr + e, dcv, n);
    });
  }
};

template <typename T>
struct GruBackward : BackwardBase<T> {
  using V = Vec<T>;
  using BackwardBase<T>::b;
  const T *a, *hn, *hp;
  T *q, *din;
  void to_step(int64_t k, int64_t active) {
    if (!this->base_to_step(k, active)) return;
    a = b.step(b.A, this->t, b.G);
    q = b.step(b.Q, this->t, b.G);
    din = b.step(b.DIN, this->t, b.G);
    hn = b.step(b.AUX, this->t, b.H);
    hp = b.slot(b.HS, b.S(k - 2));
  }
  void finish(int64_t row, int64_t j, V* acc) {
    const int64_t H = b.H;
    const T *const ar = a + row * b.G, *const hnr = hn, *const hpr = hp;
    T *const qr = q + row * b.G, *const ir = din + row * b.G, *const dhp = this->dhp;
    const V one(T(1));
    this->each(row, j, acc, [&](int64_t u, int64_t n, int64_t e, const V& dh) {
      const V r = load(ar + u, n), z = load(ar + H + u, n), nv = load(ar + 2 * H + u, n);
      const V hnv = load(hnr + e, n), hpv = load(hpr + e, n), dpv = load(dhp + e, n);
      const V dn = dh * (one - z) * (one - nv * nv);  // ∂L/∂(pre-tanh n)
      const V dr = dn * hnv * r * (one - r);          // ∂L/∂a_r
      const V dz = dh * (hpv - nv) * z * (one - z);   // ∂L/∂a_z
      store(qr + u, dr, n);
      store(qr + H + u, dz, n);
      store(qr + 2 * H + u, dn * r, n);  // hidden side: W_hn h + b_hn is multiplied by r
      store(ir + u, dr, n);
      store(ir + H + u, dz, n);
      store(ir + 2 * H + u, dn, n);
      // the z ⊙ h_{t-1} path: ∂L/∂h_{t-1} += ∂L/∂h_t ⊙ z
      store(dhp + e, at::vec::fmadd(dh, z, dpv), n);
    });
  }
};

template <typename T>
struct RnnBackward : BackwardBase<T> {
  using V = Vec<T>;
  using BackwardBase<T>::b;
  bool relu = false;
  const T* h;
  T* q;
  void to_step(int64_t k, int64_t active) {
    if (!this->base_to_step(k, active)) return;
    q = b.step(b.Q, this->t, b.G);
    h = b.slot(b.HS, b.S(k - 1));
  }
  void finish(int64_t row, int64_t j, V* acc) {
    const T* const hr = h;
    T* const qr = q;
    const bool is_relu = relu;
    const V one(T(1)), zero(T(0));
    this->each(row, j, acc, [&](int64_t, int64_t n, int64_t e, const V& dh) {
      const V hv = load(hr + e, n);
      // ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t): tanh' = 1 − h_t², relu' = [h_t > 0]
      store(qr + e, is_relu ? dh * hv.gt(zero) : dh * (one - hv * hv), n);
    });
  }
};

}  // namespace rnnlab
