// rnnlab's native CPU kernels: the explicit BPTT engine's whole time loop (rnnlab/engine.py)
// for one layer and direction, forward and backward, in compiled code.
//
// Same buffers, same slots, same equations as the Python engine; what changes is the cost of
// a step: one register-blocked product with W_hh (packed once per call, tile.h) whose epilogue
// is the cell's whole pointwise step (cells.h), vectorised at the machine's widest SIMD.
// Batch rows are independent through time (h_t of row b depends on row b only), so the rows
// are split into one block per thread and each thread runs the whole time loop on its block:
// no synchronisation between steps.
//
// Slots (engine.py): h lives in a (T+1, B, H) buffer; step k of the processing order (time
// t(k): k forward, T−1−k reverse) reads slot S(k−1) and writes slot S(k). Packed input:
// `sizes[t]` rows are active at time t, rows sorted by decreasing length; so the active rows
// of a step are a prefix, rows start (reverse direction) or end (forward) at a step in a range.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <tuple>
#include <type_traits>

#include "cells.h"
#include "tile.h"

namespace rnnlab {
namespace {

using at::Tensor;

// The engine hands over CPU tensors of one floating dtype, sizes from a PackedSequence (or all
// B): checked here anyway, since a wrong pointer would not fail cleanly.
void check(const Tensor& like, std::initializer_list<const Tensor*> ts, at::IntArrayRef sizes,
           int64_t B) {
  TORCH_CHECK(like.device().is_cpu(), "rnnlab kernels: CPU tensors only");
  for (const Tensor* t : ts)
    TORCH_CHECK(!t || !t->defined() ||
                    (t->device().is_cpu() && t->scalar_type() == like.scalar_type()),
                "rnnlab kernels: all tensors on the CPU, of one dtype");
  for (size_t i = 0; i < sizes.size(); ++i)
    TORCH_CHECK(sizes[i] >= 0 && sizes[i] <= B && (i == 0 || sizes[i] <= sizes[i - 1]),
                "rnnlab kernels: batch sizes must be non-increasing and at most B");
}

template <typename T>
void copy_row(T* dst, const T* src, int64_t H) {
  std::memcpy(dst, src, H * sizeof(T));
}

// Active rows of processing step k (0 outside [0, T)).
struct Sizes {
  const int64_t* bs;
  int64_t T_;
  bool reverse;
  int64_t operator()(int64_t k) const {
    return (k < 0 || k >= T_) ? 0 : bs[reverse ? T_ - 1 - k : k];
  }
};

// Rows [rb, re): the forward time loop. stats: this block's (T, 2, NG) sums, or null.
template <typename T, class Cell>
void forward_rows(Cell& cell, const Bufs<T>& b, const Sizes& bs, const T* pf, int64_t rb,
                  int64_t re, const T* h0, const T* c0, T* h_n, T* c_n, T* stats) {
  const int64_t H = b.H, L = Vec<T>::size();
  const int64_t panels = (H + Cell::UV * L - 1) / (Cell::UV * L);
  for (int64_t k = 0; k < b.T_; ++k) {
    const int64_t hi = std::min(re, bs(k));
    if (k >= 1)  // rows that start here (reverse direction, packed): from h0, c0
      for (int64_t r = std::max(rb, bs(k - 1)); r < hi; ++r) {
        copy_row(b.slot(b.HS, b.S(k - 1)) + r * H, h0 + r * H, H);
        if (b.CS) copy_row(b.slot(b.CS, b.S(k - 1)) + r * H, c0 + r * H, H);
      }
    if (hi > rb) {
      cell.to_step(k);
      if (cell.st.on) cell.st.reset();
      step_pass<T>(cell, rb, hi, b.slot(b.HS, b.S(k - 1)) + rb * H, H, pf, H, panels);
      if (cell.st.on) cell.st.flush(stats + b.t(k) * 2 * Cell::NG);
    }
    for (int64_t r = std::max(rb, bs(k + 1)); r < hi; ++r) {  // rows whose sequence ends here
      copy_row(h_n + r * H, b.slot(b.HS, b.S(k)) + r * H, H);
      if (b.CS) copy_row(c_n + r * H, b.slot(b.CS, b.S(k)) + r * H, H);
    }
  }
}

// Rows [rb, re): the backward loop, from the last processed step to the first. Pass j runs
// the product of step j (∂L/∂h_{j-1} += ∂L/∂a_j W_hh) and, in its epilogue, the cell of step
// s = j − 1; pass T has no product (K = 0), pass 0 no cell (it leaves ∂L/∂h0).
template <typename T, class Cell>
void backward_rows(Cell& cell, const Bufs<T>& b, const Sizes& bs, const T* pb, int64_t rb,
                   int64_t re, const T* d_hn, const T* d_cn) {
  const int64_t H = b.H, G = b.G, L = Vec<T>::size();
  const int64_t panels = (H + Cell::NV * L - 1) / (Cell::NV * L);
  for (int64_t j = b.T_; j >= 0; --j) {
    const int64_t s = j - 1;
    if (s >= 0) {
      // rows whose last step is s: h_n's (and c_n's) gradient enters there
      for (int64_t r = std::max(rb, bs(j)); r < std::min(re, bs(s)); ++r) {
        T* dh = b.slot(b.DH, b.S(s)) + r * H;
        for (int64_t u = 0; u < H; ++u) dh[u] += d_hn[r * H + u];
        if (b.dcarry) copy_row(b.dcarry + r * H, d_cn + r * H, H);
      }
      // rows that start at s (reverse, packed): their slot before collects ∂L/∂h0, from 0
      if (s >= 1)
        for (int64_t r = std::max(rb, bs(s - 1)); r < std::min(re, bs(s)); ++r)
          std::fill_n(b.slot(b.DH, b.S(s - 1)) + r * H, H, T(0));
    }
    const int64_t hi = std::min(re, std::max(bs(j), bs(s)));
    if (hi <= rb) continue;
    cell.to_step(j, bs(s));
    const bool product = j < b.T_;
    const T* a = product ? b.step(b.Q, b.t(j), G) + rb * G : nullptr;
    step_pass<T>(cell, rb, hi, a, G, pb, product ? G : 0, panels);
  }
}

// One block of rows per thread (at least 8 rows each): [c·B/n, (c+1)·B/n).
template <class F>
void by_row_blocks(int64_t B, int64_t n, const F& f) {
  at::parallel_for(0, n, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) f(c, c * B / n, (c + 1) * B / n);
  });
}

int64_t row_blocks(int64_t B) {
  return std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), B / 8), B > 0 ? 1 : 0);
}

// telemetry.py's saturation rule per gate, (centre, limit); `on` false without telemetry
struct Saturation {
  bool on = false;
  std::array<double, 4> centre{}, limit{};
};

Saturation saturation(const std::optional<Tensor>& centre, const std::optional<Tensor>& limit) {
  Saturation sat;
  sat.on = centre.has_value() && limit.has_value();
  if (!sat.on) return sat;
  const Tensor c = centre->to(at::kDouble).contiguous(), l = limit->to(at::kDouble).contiguous();
  TORCH_CHECK(c.numel() <= 4 && c.numel() == l.numel(), "one centre and limit per gate");
  for (int64_t q = 0; q < c.numel(); ++q) {
    sat.centre[q] = c.data_ptr<double>()[q];
    sat.limit[q] = l.data_ptr<double>()[q];
  }
  return sat;
}

// The forward of one cell type over all row blocks; pf: W_hh packed by `pack`.
template <typename T, class Cell, class Pack>
void forward_cell(const Bufs<T>& b, Pack pack, const T* w_hh, int64_t mode, const Sizes& bs,
                  const T* h0, const T* c0, T* h_n, T* c_n, T* stats, const Saturation& sat) {
  const int64_t L = Vec<T>::size(), panels = (b.H + Cell::UV * L - 1) / (Cell::UV * L);
  const Tensor pf_ = at::empty({panels * b.H * Cell::NV * L}, at::TensorOptions(c10::CppTypeToScalarType<T>::value));
  T* pf = pf_.data_ptr<T>();  // (64-byte aligned, like every ATen buffer)
  pack(w_hh, b.H, pf);
  const int64_t n = row_blocks(b.B);
  by_row_blocks(b.B, n, [&](int64_t c, int64_t rb, int64_t re) {
    GateStats<T, Cell::NG> st;
    st.on = sat.on;
    for (int q = 0; q < Cell::NG; ++q) {
      st.centre[q] = Vec<T>(T(sat.centre[q]));
      st.limit[q] = Vec<T>(T(sat.limit[q]));
    }
    Cell cell{b, st};
    if constexpr (Cell::NG == 1) cell.relu = mode == RNN_RELU;
    T* sp = stats ? stats + c * b.T_ * 2 * Cell::NG : nullptr;
    forward_rows<T>(cell, b, bs, pf, rb, re, h0, c0, h_n, c_n, sp);
  });
}

using Outputs = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// gates: xw_t = W_ih x_t + b for all t, (T, B, G) (b: LSTM and RNN b_ih + b_hh, GRU b_ih); on
// return it holds the gates (RNN: unchanged). Returns (HS, CS, AUX, h_n, c_n, stats), with
// stats (T, 2, NG): per step and gate Σ v and the number saturated (when centre is given).
Outputs recurrence_forward(int64_t mode, Tensor gates, const Tensor& h0_,
                           const std::optional<Tensor>& c0_, const Tensor& w_hh_,
                           const std::optional<Tensor>& b_hh_, at::IntArrayRef sizes,
                           bool reverse, const std::optional<Tensor>& centre,
                           const std::optional<Tensor>& limit) {
  TORCH_CHECK(gates.is_contiguous() && gates.dim() == 3, "gates: a contiguous (T, B, G) tensor");
  const int64_t T_ = gates.size(0), B = gates.size(1), G = w_hh_.size(0), H = w_hh_.size(1);
  TORCH_CHECK(static_cast<int64_t>(sizes.size()) == T_, "one batch size per step");
  check(gates, {&h0_, &w_hh_, c0_ ? &*c0_ : nullptr, b_hh_ ? &*b_hh_ : nullptr}, sizes, B);
  const bool packed = std::any_of(sizes.begin(), sizes.end(), [&](int64_t s) { return s != B; });
  const auto opt = gates.options();
  auto make = [&](at::IntArrayRef shape) {  // padding rows stay finite (zero)
    return packed ? at::zeros(shape, opt) : at::empty(shape, opt);
  };
  const bool lstm = mode == LSTM, gru = mode == GRU;
  const Tensor h0 = h0_.contiguous(), w_hh = w_hh_.contiguous();
  const int64_t init = reverse ? T_ : 0;
  Tensor HS = make({T_ + 1, B, H}), CS, AUX, c0, c_n, b_hh;
  HS[init].copy_(h0);
  if (lstm) {
    c0 = c0_->contiguous();
    CS = make({T_ + 1, B, H});
    CS[init].copy_(c0);
    c_n = at::empty({B, H}, opt);
  }
  if (lstm || gru) AUX = make({T_, B, H});
  if (gru && b_hh_.has_value()) b_hh = b_hh_->contiguous();
  Tensor h_n = at::empty({B, H}, opt);
  const int64_t NG = lstm ? 4 : gru ? 3 : 1;
  Tensor stats;
  if (centre.has_value() && limit.has_value()) stats = at::zeros({std::max<int64_t>(row_blocks(B), 1), T_, 2, NG}, opt);
  const Saturation sat = saturation(centre, limit);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "rnnlab_forward", [&] {
    using T = scalar_t;
    Bufs<T> b{};
    b.T_ = T_, b.B = B, b.H = H, b.G = G, b.reverse = reverse;
    b.A = b.XW = gates.data_ptr<T>();
    b.HS = HS.data_ptr<T>();
    b.CS = lstm ? CS.data_ptr<T>() : nullptr;
    b.AUX = AUX.defined() ? AUX.data_ptr<T>() : nullptr;
    b.b_hh = b_hh.defined() ? b_hh.data_ptr<T>() : nullptr;
    const Sizes bs{sizes.data(), T_, reverse};
    const T* w = w_hh.data_ptr<T>();
    const T* h0p = h0.data_ptr<T>();
    const T* c0p = lstm ? c0.data_ptr<T>() : nullptr;
    T* hn = h_n.data_ptr<T>();
    T* cn = lstm ? c_n.data_ptr<T>() : nullptr;
    T* sp = stats.defined() ? stats.data_ptr<T>() : nullptr;
    if (lstm)
      forward_cell<T, LstmForward<T>>(b, pack_forward<T, 4, 1>, w, mode, bs, h0p, c0p, hn, cn,
                                      sp, sat);
    else if (gru)
      forward_cell<T, GruForward<T>>(b, pack_forward<T, 3, 1>, w, mode, bs, h0p, c0p, hn, cn,
                                     sp, sat);
    else
      forward_cell<T, RnnForward<T>>(b, pack_forward<T, 1, 2>, w, mode, bs, h0p, c0p, hn, cn,
                                     sp, sat);
  });
  if (stats.defined()) stats = stats.sum(0);
  return {HS, CS, AUX, h_n, c_n, stats};
}

// The backward of one cell type over all row blocks; pb: W_hh packed for ∂L/∂a_t W_hh.
template <typename T, class Cell>
void backward_cell(const Bufs<T>& b, const T* w_hh, int64_t mode, const Sizes& bs,
                   const T* d_hn, const T* d_cn) {
  const int64_t L = Vec<T>::size(), panels = (b.H + Cell::NV * L - 1) / (Cell::NV * L);
  const Tensor pb_ = at::empty({panels * b.G * Cell::NV * L}, at::TensorOptions(c10::CppTypeToScalarType<T>::value));
  T* pb = pb_.data_ptr<T>();
  pack_backward<T, Cell::NV>(w_hh, b.G, b.H, pb);
  by_row_blocks(b.B, row_blocks(b.B), [&](int64_t, int64_t rb, int64_t re) {
    Cell cell{{b}};
    if constexpr (std::is_same_v<Cell, RnnBackward<T>>) cell.relu = mode == RNN_RELU;
    backward_rows<T>(cell, b, bs, pb, rb, re, d_hn, d_cn);
  });
}

// Returns (Q, DIN, DH, DC, dh0, dc0): ∂L/∂a_t on the hidden side (T, B, G) (zero on padding
// rows), the GRU's input side (else undefined), the ∂L/∂h slots (T+1, B, H) (with `record`:
// the total ∂L/∂h_t of every active row), the LSTM's total ∂L/∂c_t (T, B, H) (with `record`),
// ∂L/∂h0 and ∂L/∂c0.
Outputs recurrence_backward(int64_t mode, const Tensor& gates, const Tensor& HS,
                            const std::optional<Tensor>& CS, const std::optional<Tensor>& AUX,
                            const Tensor& w_hh_, const std::optional<Tensor>& d_out,
                            const std::optional<Tensor>& d_hn_,
                            const std::optional<Tensor>& d_cn_, at::IntArrayRef sizes,
                            bool reverse, bool record) {
  const int64_t T_ = HS.size(0) - 1, B = HS.size(1), G = w_hh_.size(0), H = w_hh_.size(1);
  TORCH_CHECK(static_cast<int64_t>(sizes.size()) == T_, "one batch size per step");
  check(HS, {&gates, &w_hh_, CS ? &*CS : nullptr, AUX ? &*AUX : nullptr}, sizes, B);
  const bool packed = std::any_of(sizes.begin(), sizes.end(), [&](int64_t s) { return s != B; });
  const auto opt = HS.options();
  auto make = [&](at::IntArrayRef shape) {
    return packed ? at::zeros(shape, opt) : at::empty(shape, opt);
  };
  const bool lstm = mode == LSTM, gru = mode == GRU;
  const Tensor w_hh = w_hh_.contiguous();
  Tensor Q = make({T_, B, G}), DIN, DC, dc0, dcarry, d_cn;
  Tensor DH = at::empty({T_ + 1, B, H}, opt);
  DH[reverse ? T_ : 0].zero_();
  Tensor local = DH.narrow(0, reverse ? 0 : 1, T_);  // ∂L/∂h_t|local, by time
  if (d_out.has_value()) local.copy_(*d_out);
  else local.zero_();
  const Tensor d_hn = d_hn_.has_value() ? d_hn_->contiguous() : at::zeros({B, H}, opt);
  Tensor dh0 = at::zeros({B, H}, opt);
  if (gru) DIN = make({T_, B, G});
  if (lstm) {
    d_cn = d_cn_.has_value() && d_cn_->numel() ? d_cn_->contiguous() : at::zeros({B, H}, opt);
    dcarry = at::zeros({B, H}, opt);
    dc0 = at::zeros({B, H}, opt);
    if (record) DC = make({T_, B, H});
  }
  AT_DISPATCH_FLOATING_TYPES(HS.scalar_type(), "rnnlab_backward", [&] {
    using T = scalar_t;
    Bufs<T> b{};
    b.T_ = T_, b.B = B, b.H = H, b.G = G, b.reverse = reverse, b.record = record;
    b.A = const_cast<T*>(gates.data_ptr<T>());
    b.HS = const_cast<T*>(HS.data_ptr<T>());
    b.CS = lstm ? const_cast<T*>(CS->data_ptr<T>()) : nullptr;
    b.AUX = (lstm || gru) ? const_cast<T*>(AUX->data_ptr<T>()) : nullptr;
    b.Q = Q.data_ptr<T>();
    b.DIN = gru ? DIN.data_ptr<T>() : nullptr;
    b.DH = DH.data_ptr<T>();
    b.DC = DC.defined() ? DC.data_ptr<T>() : nullptr;
    b.dcarry = lstm ? dcarry.data_ptr<T>() : nullptr;
    b.dh0 = dh0.data_ptr<T>();
    b.dc0 = lstm ? dc0.data_ptr<T>() : nullptr;
    const Sizes bs{sizes.data(), T_, reverse};
    const T* w = w_hh.data_ptr<T>();
    const T* dhn = d_hn.data_ptr<T>();
    const T* dcn = lstm ? d_cn.data_ptr<T>() : nullptr;
    if (lstm) backward_cell<T, LstmBackward<T>>(b, w, mode, bs, dhn, dcn);
    else if (gru) backward_cell<T, GruBackward<T>>(b, w, mode, bs, dhn, dcn);
    else backward_cell<T, RnnBackward<T>>(b, w, mode, bs, dhn, dcn);
  });
  return {Q, DIN, DH, DC, dh0, dc0};
}

}  // namespace
}  // namespace rnnlab

TORCH_LIBRARY(rnnlab, m) {
  m.def("recurrence_forward(int mode, Tensor(a!) gates, Tensor h0, Tensor? c0, Tensor w_hh, "
        "Tensor? b_hh, int[] sizes, bool reverse, Tensor? centre, Tensor? limit) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
        &rnnlab::recurrence_forward);
  m.def("recurrence_backward(int mode, Tensor gates, Tensor hs, Tensor? cs, Tensor? aux, "
        "Tensor w_hh, Tensor? d_out, Tensor? d_hn, Tensor? d_cn, int[] sizes, bool reverse, "
        "bool record) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
        &rnnlab::recurrence_backward);
}
