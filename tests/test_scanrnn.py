"""rnnlab.MinGRU / MinLSTM / LRU: the parallel scan against the sequential steps and against the
papers' equations (tests/scan_reference.py), gradcheck, closed-form gradients through time,
variable lengths, unbatched input, streaming with step(), and the module conventions."""

from __future__ import annotations

import math

import pytest
import scan_reference as ref
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab

D64 = torch.float64
CLASSES = {"MinGRU": rnnlab.MinGRU, "MinLSTM": rnnlab.MinLSTM, "LRU": rnnlab.LRU}
# (class, constructor options): the min* layers in both scans' forms
KINDS = [("MinGRU", {}), ("MinGRU", {"log_space": False}), ("MinLSTM", {}),
         ("MinLSTM", {"log_space": False}), ("LRU", {})]
KIND_IDS = [c + ("-linear" if kw else "") for c, kw in KINDS]


def make(name, I, H, **kw):
    return CLASSES[name](I, H, **kw)


def state(layer, B, dtype):
    N, K = layer.state_size, layer.num_layers * layer.num_directions
    h0 = torch.randn(K, B, N, dtype=dtype)
    if isinstance(layer, rnnlab.LRU):
        h0 = torch.complex(h0, torch.randn(K, B, N, dtype=dtype))
    return h0


@pytest.mark.parametrize("kind,kw", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("dtype,tol", [(D64, 1e-10), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("T", [1, 2, 257, 4096])
def test_parallel_equals_sequential(kind, kw, dtype, tol, T):
    B, I, H = (2, 2, 3) if T == 4096 else (3, 4, 5)
    layer = make(kind, I, H, num_layers=2, dtype=dtype, **kw)
    x = torch.randn(T, B, I, dtype=dtype)
    h0 = state(layer, B, dtype)
    out_p, h_p = layer(x, h0)
    layer.scan = "sequential"
    out_s, h_s = layer(x, h0)
    torch.testing.assert_close(out_p, out_s, rtol=0, atol=tol)
    torch.testing.assert_close(h_p, h_s, rtol=0, atol=tol)


@pytest.mark.parametrize("kind,kw", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("bidirectional,packed", [(False, False), (True, False), (True, True)])
def test_both_scans_equal_the_papers_equations_values_and_gradients(kind, kw, bidirectional,
                                                                    packed):
    """Outputs, h_n and every parameter's gradient against the reference, float64."""
    T, B, I, H = 6, 4, 3, 5
    layer = make(kind, I, H, num_layers=2, bidirectional=bidirectional, dtype=D64, **kw)
    lengths = torch.tensor([4, 6, 1, 5]) if packed else torch.full((B,), T)
    x = torch.randn(T, B, I, dtype=D64)
    h0 = state(layer, B, D64)
    D = layer.num_directions
    weights = (torch.randn(T, B, D * H, dtype=D64), torch.randn(2 * D, B, H, 2, dtype=D64))
    out, h_n, _, _, active = ref.run(layer, x, lengths, h0)
    ref.loss_of(out, h_n, weights).backward()
    want = {n: p.grad.clone() for n, p in layer.named_parameters()}
    for scan in ("parallel", "sequential"):
        layer.zero_grad()
        layer.scan = scan
        got, got_h = ref.forward(layer, x, lengths, h0, packed)
        torch.testing.assert_close(got * active[..., None], out, rtol=0, atol=1e-12)
        torch.testing.assert_close(got_h, h_n, rtol=0, atol=1e-12)
        ref.loss_of(got, got_h, weights).backward()
        for n, p in layer.named_parameters():
            torch.testing.assert_close(p.grad, want[n], rtol=0, atol=1e-10, msg=n)


@pytest.mark.parametrize("kind,kw", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("bidirectional,lengths", [(False, None), (True, [3, 1, 2])])
def test_gradcheck(kind, kw, bidirectional, lengths):
    """Every parameter, the input and h0, parallel scan, float64."""
    T, B, I, H = 3, 3, 2, 2
    layer = make(kind, I, H, num_layers=2, bidirectional=bidirectional, dtype=D64, **kw)
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(T, B, I, dtype=D64, requires_grad=True)
    h0 = state(layer, B, D64).requires_grad_()

    def f(x, h0, *ps):
        inp = x if lengths is None else pack_padded_sequence(x, torch.tensor(lengths),
                                                             enforce_sorted=False)
        out, h_n = functional_call(layer, dict(zip(names, ps, strict=True)), (inp, h0))
        if lengths is not None:
            out = out.data
        return out, torch.view_as_real(h_n) if h_n.is_complex() else h_n

    ps = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    assert gradcheck(f, (x, h0, *ps))


def _closed_form_loss(h_n, v):
    """L = Re⟨v, h_T⟩: ∂L/∂h_t = (∂h_T/∂h_t)ᴴ v, the Jacobian product applied to v."""
    return (v.conj() * h_n).real.sum()


@pytest.mark.parametrize("r,T", [(0.9, 50), (0.99, 200), (0.5, 30)])
def test_lru_gradient_through_time_is_r_to_the_distance(r, T):
    """Every |λ_j| = r (phases arbitrary): ∂h_T/∂h_t = diag(λ^(T−t)), so for any v,
    ‖∂L/∂h_t‖ = r^(T−t) ‖v‖ exactly; the trace's ‖δ_t‖ must say so."""
    B, I, N = 3, 2, 4
    layer = rnnlab.LRU(I, N, dtype=D64)
    with torch.no_grad():
        layer.nu_log_l0.fill_(math.log(-math.log(r)))             # |λ| = exp(−exp(ν)) = r
        layer.theta_log_l0.copy_(torch.randn(N, dtype=D64))       # θ arbitrary
    assert torch.allclose(layer.eigenvalues().abs(), torch.full((N,), r, dtype=D64))
    v = torch.randn(B, N, dtype=torch.complex128)
    v = v / v.abs().pow(2).sum(1, keepdim=True).sqrt()            # ‖v_b‖ = 1
    x = torch.randn(T, B, I, dtype=D64)
    with rnnlab.trace(layer) as tr:
        _, h_n = layer(x)
        _closed_form_loss(h_n[0], v).backward()
    want = torch.tensor([r ** (T - 1 - t) for t in range(T)], dtype=D64)
    torch.testing.assert_close(tr.grad_h[0], want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("kind", ["MinGRU", "MinLSTM"])
@pytest.mark.parametrize("keep,T", [(0.9, 60), (0.5, 30), (0.99, 300)])
def test_constant_keep_gate_carries_its_power(kind, keep, T):
    """Gates that ignore x (W = 0 on the gate rows): the keep factor 1 − z (minGRU) or
    f' = f/(f+i) (minLSTM) is a constant c, so ∂h_T/∂h_t = c^(T−t) I and ‖∂L/∂h_t‖ =
    c^(T−t) ‖v‖; checked through the trace (the scan's adjoint) and through the sequential
    steps with retain_grad."""
    B, I, H = 3, 2, 4
    layer = make(kind, I, H, dtype=D64)
    with torch.no_grad():
        layer.weight_ih_l0[: -H].zero_()                         # gates from the bias alone
        if kind == "MinGRU":
            layer.bias_ih_l0[:H].fill_(math.log((1 - keep) / keep))  # σ(b) = z = 1 − keep
        else:  # σ(b_i) = (1 − keep)/2, σ(b_f) = keep/2: f' = σ(b_f)/(σ(b_f) + σ(b_i)) = keep
            logit = lambda p: math.log(p / (1 - p))
            layer.bias_ih_l0[:H].fill_(logit((1 - keep) / 2))
            layer.bias_ih_l0[H : 2 * H].fill_(logit(keep / 2))
    v = torch.randn(B, H, dtype=D64)
    v = v / v.norm(dim=1, keepdim=True)
    x = torch.randn(T, B, I, dtype=D64)
    want = torch.tensor([keep ** (T - 1 - t) for t in range(T)], dtype=D64)
    with rnnlab.trace(layer) as tr:
        _, h_n = layer(x)
        _closed_form_loss(h_n[0], v).backward()
    torch.testing.assert_close(tr.grad_h[0], want, rtol=1e-9, atol=0)
    # the same through the sequential steps, every h_t kept
    hs, h = [], torch.zeros(B, H, dtype=D64)
    for t in range(T):
        _, h = layer.step(x[t], h.unsqueeze(0))
        h = h[0]
        h.retain_grad()
        hs.append(h)
    _closed_form_loss(hs[-1], v).backward()
    got = torch.stack([h.grad.norm(dim=1).mean() for h in hs])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("kind,kw", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("scan", ["parallel", "sequential"])
def test_packed_input_equals_each_sequence_alone(kind, kw, scan):
    """Variable lengths: each sequence's output and h_n as if run alone (both directions)."""
    lengths = [5, 2, 7, 1]
    layer = make(kind, 3, 4, num_layers=2, bidirectional=True, dtype=D64, scan=scan, **kw)
    xs = [torch.randn(n, 3, dtype=D64) for n in lengths]
    h0 = state(layer, len(lengths), D64)
    padded = torch.nn.utils.rnn.pad_sequence(xs)
    out, h_n = layer(pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=False),
                     h0)
    out, out_len = pad_packed_sequence(out)
    assert out_len.tolist() == lengths
    for b, x in enumerate(xs):
        o, h = layer(x, h0[:, b])  # unbatched (T, I), h0 (L·D, N)
        torch.testing.assert_close(out[: lengths[b], b], o, rtol=0, atol=1e-12)
        torch.testing.assert_close(h_n[:, b], h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,kw", KINDS[::2], ids=KIND_IDS[::2])
def test_batch_first_and_unbatched(kind, kw):
    layer = make(kind, 3, 4, batch_first=True, dtype=D64, **kw)
    x = torch.randn(2, 6, 3, dtype=D64)
    out, h_n = layer(x)
    assert out.shape == (2, 6, 4) and h_n.shape == (1, 2, 4)
    layer.batch_first = False
    out_t, h_t = layer(x.transpose(0, 1))
    torch.testing.assert_close(out_t.transpose(0, 1), out, rtol=0, atol=0)
    o1, h1 = layer(x[0].contiguous())  # unbatched (T, I): batch_first does not apply
    assert o1.shape == (6, 4) and h1.shape == (1, 4)
    torch.testing.assert_close(o1, out[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,kw", KINDS, ids=KIND_IDS)
def test_step_streams_the_forward(kind, kw):
    """step() one token at a time through every layer = the whole-sequence forward."""
    layer = make(kind, 3, 4, num_layers=3, dtype=D64, **kw)
    x = torch.randn(7, 2, 3, dtype=D64)
    h0 = state(layer, 2, D64)
    out, h_n = layer(x, h0)
    h = h0
    for t in range(7):
        y, h = layer.step(x[t], h)
        torch.testing.assert_close(y, out[t], rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h_n, rtol=0, atol=1e-12)
    y, h1 = layer.step(x[0, 0])  # unbatched, zero state
    assert y.shape == (4,) and h1.shape == (3, layer.state_size)
    torch.testing.assert_close(y, layer(x[:1, :1])[0][0, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["MinGRU", "MinLSTM", "LRU"])
def test_state_is_output_says_whether_h_n_is_the_last_output(kind):
    layer = make(kind, 3, 4, num_layers=2, bidirectional=True, dtype=D64)
    out, h_n = layer(torch.randn(5, 2, 3, dtype=D64))
    last = torch.stack([out[-1, :, :4], out[0, :, 4:]])  # top layer: forward, reverse
    if layer.state_is_output:
        torch.testing.assert_close(h_n[2:], last, rtol=0, atol=0)
    else:  # the LRU: a complex state, read out by Re(C h) + D x
        assert h_n.is_complex() and kind == "LRU"


def test_lru_state_size_and_width_change():
    """N ≠ H: complex state (L, B, N); D is elementwise when widths match, a matrix otherwise."""
    layer = rnnlab.LRU(3, 4, num_layers=2, state_size=6, bidirectional=True, bias=True)
    assert layer.D_l0.shape == (4, 3) and layer.D_l1.shape == (4, 8)
    assert rnnlab.LRU(4, 4).D_l0.shape == (4,)
    out, h_n = layer(torch.randn(5, 2, 3))
    assert out.shape == (5, 2, 8) and out.dtype == torch.float32
    assert h_n.shape == (4, 2, 6) and h_n.dtype == torch.complex64
    assert layer.B_re_l0.shape == (6, 3) and layer.C_im_l1_reverse.shape == (4, 6)


@pytest.mark.parametrize("r_min,r_max,max_phase", [(0.0, 1.0, 2 * math.pi), (0.9, 0.999, 0.3),
                                                   (0.5, 0.5, 1.0)])
def test_lru_ring_initialisation(r_min, r_max, max_phase):
    layer = rnnlab.LRU(8, 64, state_size=512, r_min=r_min, r_max=r_max, max_phase=max_phase,
                       dtype=D64)
    lam = layer.eigenvalues()
    r = lam.abs()
    assert r.min() >= r_min - 1e-12 and r.max() <= r_max + 1e-12
    theta = torch.exp(layer.theta_log_l0)
    assert theta.min() >= 0 and theta.max() <= max_phase
    torch.testing.assert_close(torch.angle(lam), torch.atan2(torch.sin(theta), torch.cos(theta)))
    torch.testing.assert_close(torch.exp(layer.gamma_log_l0), (1 - r**2).sqrt())  # γ
    if r_max > r_min:  # |λ|² uniform on [r_min², r_max²]: its mean is the midpoint
        mid = (r_min**2 + r_max**2) / 2
        assert abs((r**2).mean().item() - mid) < 4 * (r_max**2 - r_min**2) / math.sqrt(12 * 512)
    assert abs(layer.B_re_l0.std().item() - 1 / math.sqrt(16)) < 0.02  # N(0, 1/(2I))


@pytest.mark.parametrize("kind", ["MinGRU", "MinLSTM", "LRU"])
def test_state_dict_names_and_round_trip(kind):
    a = make(kind, 3, 4, num_layers=2, bidirectional=True)
    b = make(kind, 3, 4, num_layers=2, bidirectional=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)
    names = set(a.state_dict())
    if kind == "LRU":
        assert {"nu_log_l0", "gamma_log_l1_reverse", "B_re_l1", "C_im_l0", "D_l0"} <= names
    else:
        n = 2 if kind == "MinGRU" else 3
        assert a.weight_ih_l0.shape == (n * 4, 3) and a.weight_ih_l1_reverse.shape == (n * 4, 8)
        assert a.bias_ih_l1.shape == (n * 4,) and not any("hh" in k for k in names)
        assert "bias_ih_l0" not in make(kind, 3, 4, bias=False).state_dict()


def test_repr():
    assert repr(rnnlab.MinGRU(3, 4)) == "MinGRU(3, 4)"
    assert repr(rnnlab.MinLSTM(3, 4, 2, bias=False, batch_first=True, log_space=False)) == (
        "MinLSTM(3, 4, num_layers=2, bias=False, batch_first=True, log_space=False)")
    assert repr(rnnlab.LRU(3, 4, bidirectional=True, r_min=0.9, scan="sequential")) == (
        "LRU(3, 4, bidirectional=True, scan='sequential', r_min=0.9)")


def test_dropout_between_layers_only_in_training():
    """dropout=1 zeroes layer 0's output in training: layer 1 then runs on zeros."""
    layer = rnnlab.MinGRU(3, 4, num_layers=2, dropout=1.0)
    x = torch.randn(5, 2, 3)
    out, _ = layer(x)
    top = rnnlab.MinGRU(4, 4)
    top.load_state_dict({"weight_ih_l0": layer.weight_ih_l1, "bias_ih_l0": layer.bias_ih_l1})
    torch.testing.assert_close(out, top(torch.zeros(5, 2, 4))[0], rtol=0, atol=0)
    layer.eval()
    assert not torch.allclose(layer(x)[0], out)
    with pytest.warns(UserWarning, match="dropout"):
        rnnlab.MinLSTM(3, 4, dropout=0.5)


@pytest.mark.parametrize("kind", ["MinGRU", "MinLSTM", "LRU"])
def test_errors(kind):
    layer = make(kind, 3, 4)
    with pytest.raises(ValueError, match="Unknown scan"):
        layer.scan = "fast"
    with pytest.raises(ValueError, match="Unknown scan"):
        make(kind, 3, 4, scan="blelloch")
    with pytest.raises(RuntimeError, match="input_size"):
        layer(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="2D or 3D"):
        layer(torch.randn(5))
    with pytest.raises(ValueError, match="dtype"):
        layer(torch.randn(5, 2, 3, dtype=D64))
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        layer(torch.randn(5, 2, 3), torch.zeros(1, 3, 4, dtype=layer.state_dtype))
    with pytest.raises(RuntimeError, match="hx should also be 3-D"):
        layer(torch.randn(5, 2, 3), torch.zeros(2, 4, dtype=layer.state_dtype))
    with pytest.raises(RuntimeError, match="larger than 0"):
        layer(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="hidden_size"):
        make(kind, 3, 0)
    with pytest.raises(RuntimeError, match="bidirectional"):
        make(kind, 3, 4, bidirectional=True).step(torch.randn(2, 3))
    with pytest.raises(ValueError, match="x_t"):
        layer.step(torch.randn(1, 2, 3))


def test_lru_errors():
    with pytest.raises(ValueError, match="r_min"):
        rnnlab.LRU(3, 4, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="r_max"):
        rnnlab.LRU(3, 4, r_max=1.5)
    with pytest.raises(ValueError, match="max_phase"):
        rnnlab.LRU(3, 4, max_phase=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        rnnlab.LRU(3, 4, dtype=torch.float16)
    layer = rnnlab.LRU(3, 4)
    x, h0 = torch.randn(5, 2, 3), torch.randn(1, 2, 4)  # a real h0: zero imaginary part
    torch.testing.assert_close(layer(x, h0)[1], layer(x, h0.to(torch.complex64))[1])
