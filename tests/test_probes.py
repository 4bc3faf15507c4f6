"""rnnlab.probes against closed forms and torch.autograd (never against its own earlier output)."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from rnnlab import probes

D64 = torch.float64


def _orthogonal(n, gen_seed=1):
    g = torch.Generator().manual_seed(gen_seed)
    return torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D64))[0]


def _linear_rnn(r, H=6, I=3):
    """W_hh = r·Q, W_ih = 0, b = 0, h0 = 0: h_t = 0 for all t, so tanh'(a_t) = 1 exactly."""
    rnn = rnnlab.RNN(I, H, batch_first=True).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        rnn.weight_hh_l0.copy_(r * _orthogonal(H))
    return rnn


# ---- closed forms ------------------------------------------------------------------------------
@pytest.mark.parametrize("r", [0.7, 1.0, 1.3])
def test_rnn_rQ_jacobian_norms_are_r_powers(r):
    T = 12
    rnn = _linear_rnn(r)
    x = torch.randn(2, T, 3, dtype=D64)
    got = probes.jacobian_norms(rnn, x, reduce="none")  # (B, T)
    t = torch.arange(T, dtype=D64)
    want = r ** (T - 1 - t)  # ‖∂h_{T−1}/∂h_t‖ = ‖(rQ)^(T−1−t)‖ = r^(T−1−t)
    assert got.shape == (2, T)
    torch.testing.assert_close(got, want.expand(2, T), rtol=1e-12, atol=0)
    assert got[:, -1].eq(1).all()


@pytest.mark.parametrize("r", [0.5, 0.9, 1.2])
def test_rnn_rQ_every_lyapunov_exponent_is_ln_r(r):
    rnn = _linear_rnn(r)
    x = torch.randn(1, 30, 3, dtype=D64)
    lam = probes.lyapunov_spectrum(rnn, x, warmup=5)
    assert lam.shape == (6,)
    torch.testing.assert_close(lam, torch.full((6,), math.log(r), dtype=D64), rtol=0, atol=1e-12)
    lam2 = probes.lyapunov_spectrum(rnn, x[0], k=2, warmup=0)  # one (T, I) sequence, k = 2
    torch.testing.assert_close(lam2, torch.full((2,), math.log(r), dtype=D64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("f", [0.3, 0.9])
def test_lstm_c_path_is_forget_gate_power(f):
    """Zero weights, forget bias logit(f): f_t = f, and ∂c_T/∂c_t along the highway is
    ∏_{k=t+1}^{T} f_k = f^(T−t) in the theory's 1-based notation, i.e. f^(T−1−t) with rnnlab's
    0-based steps (final state c_{T−1})."""
    T, H = 10, 3
    lstm = rnnlab.LSTM(2, H, batch_first=True).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.bias_ih_l0[H:2 * H] = math.log(f / (1 - f))  # logit(f)
    x = torch.randn(2, T, 2, dtype=D64)
    got = probes.jacobian_norms(lstm, x, path="c")
    want = f ** (T - 1 - torch.arange(T, dtype=D64))
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)


def test_random_tanh_rnn_lambda1_below_log_sigma_max():
    rnn = rnnlab.RNN(4, 16, batch_first=True, spectral_radius=1.5).double()
    x = torch.randn(3, 40, 4, dtype=D64)
    lam = probes.lyapunov_spectrum(rnn, x, k=4, reduce="none")  # (B, k)
    smax = torch.linalg.svdvals(rnn.weight_hh_l0.detach())[0]
    assert lam.shape == (3, 4)
    assert (lam[:, 0] <= torch.log(smax) + 1e-12).all()
    assert (lam[:, :-1] >= lam[:, 1:]).all()  # sorted descending


# ---- jacobian_norms against torch.autograd.functional.jacobian --------------------------------
def _autograd_norms(layer, x):
    """‖∂s_{T−1}/∂s_t‖₂ by autograd: run the last layer from state s_t over the remaining steps
    with torch.nn's own layer (copied weights) and differentiate."""
    L, H = layer.num_layers, layer.hidden_size
    tnn = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}[layer.mode]
    if layer.mode == "RNN":
        tnn = lambda *a, _c=tnn, **k: _c(*a, nonlinearity=layer.nonlinearity, **k)
    sd = layer.state_dict()
    inp = x
    if L > 1:
        lower = tnn(layer.input_size, H, L - 1, batch_first=True).double()
        lower.load_state_dict({k: v for k, v in sd.items() if not k.endswith(f"l{L - 1}")})
        inp = lower(x)[0]
    last = tnn(inp.shape[-1], H, 1, batch_first=True).double()
    last.load_state_dict({k.replace(f"l{L - 1}", "l0"): v for k, v in sd.items()
                          if k.endswith(f"l{L - 1}")})
    lstm = layer.mode == "LSTM"
    flat = lambda st: torch.cat((st[0][0, 0], st[1][0, 0])) if lstm else st[0, 0]
    T = x.shape[1]
    norms = []
    for t in range(T):
        s_t = flat(last(inp[:, : t + 1])[1]).detach()

        def final(s, t=t):
            if t == T - 1:
                return s
            hx = (s[:H].view(1, 1, H), s[H:].view(1, 1, H)) if lstm else s.view(1, 1, H)
            return flat(last(inp[:, t + 1:], hx)[1])

        J = torch.autograd.functional.jacobian(final, s_t)
        norms.append(torch.linalg.matrix_norm(J, ord=2))
    return torch.stack(norms)


@pytest.mark.parametrize("mode,layers", [("RNN", 1), ("GRU", 1), ("LSTM", 1), ("RNN", 2),
                                         ("GRU", 2), ("LSTM", 2)])
def test_jacobian_norms_match_autograd(mode, layers):
    layer = getattr(rnnlab, mode)(3, 4, layers, batch_first=False).double()
    x = torch.randn(1, 7, 3, dtype=D64)  # (B, T, I) for the batch-first torch reference
    got = probes.jacobian_norms(layer, x.transpose(0, 1))  # the layer's own layout, (T, B, I)
    want = _autograd_norms(layer, x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)



def test_reverse_direction_counts_steps_in_processing_order():
    """direction=1 of a bidirectional layer = a one-way layer with the reverse weights run on
    the time-reversed input (checked against autograd)."""
    bi = rnnlab.GRU(3, 4, bidirectional=True).double()
    one = rnnlab.GRU(3, 4).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(one, name + "_l0").copy_(getattr(bi, name + "_l0_reverse"))
    x = torch.randn(1, 6, 3, dtype=D64)
    torch.testing.assert_close(probes.jacobian_norms(bi, x.transpose(0, 1), direction=1),
                               _autograd_norms(one, x.flip(1)))

def test_jacobian_norms_relu_and_lstm_h_block_match_autograd():
    rnn = rnnlab.RNN(3, 5, nonlinearity="relu").double()
    x = torch.randn(1, 6, 3, dtype=D64)
    torch.testing.assert_close(probes.jacobian_norms(rnn, x.transpose(0, 1)),
                               _autograd_norms(rnn, x))
    # LSTM "h" path: ∂h_{T−1}/∂h_t with c_t held fixed
    lstm = rnnlab.LSTM(3, 4).double()
    T, H = 5, 4
    inp = torch.randn(1, T, 3, dtype=D64)
    ref = nn.LSTM(3, 4, batch_first=True).double()
    ref.load_state_dict(lstm.state_dict())
    got = probes.jacobian_norms(lstm, inp.transpose(0, 1), path="h")
    for t in range(T - 1):
        h_t, c_t = (s.detach() for s in ref(inp[:, : t + 1])[1])
        J = torch.autograd.functional.jacobian(
            lambda h, c_t=c_t, t=t: ref(inp[:, t + 1:], (h, c_t))[1][0].flatten(), h_t)
        want = torch.linalg.matrix_norm(J.reshape(H, H), ord=2)
        torch.testing.assert_close(got[t], want)


def test_jacobian_norms_through_a_model_use_its_embedding():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.backbone = rnnlab.GRU(3, 4, batch_first=True)
            self.head = nn.Linear(4, 5)

        def forward(self, ids):
            return self.head(self.backbone(self.embed(ids))[0])

    model = Tiny().double()
    ids = torch.randint(0, 5, (2, 6))
    got = probes.jacobian_norms(model, ids, reduce="none")
    want = torch.stack([_autograd_norms(model.backbone, model.embed(ids[b:b + 1]).detach())
                        for b in range(2)])
    torch.testing.assert_close(got, want)
    assert probes.find_recurrent(model) is model.backbone


# ---- spectral ----------------------------------------------------------------------------------
def test_spectral_known_matrices():
    rnn = rnnlab.RNN(2, 3).double()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.diag(torch.tensor([0.5, -0.8, 0.2], dtype=D64)))
    (row,) = probes.spectral(rnn)
    assert row["sigma_max"] == pytest.approx(0.8, abs=1e-15)
    assert row["spectral_radius"] == pytest.approx(0.8, abs=1e-15)
    assert row["regime"] == "vanishing"
    # non-normal: ρ = 0.5 (triangular), σ_max from svdvals; torch reference values
    gru = rnnlab.GRU(2, 2, num_layers=2, bidirectional=True).double()
    W = torch.tensor([[0.5, 3.0], [0.0, 0.5]], dtype=D64)
    with torch.no_grad():
        gru.weight_hh_l1_reverse.copy_(torch.cat((torch.eye(2, dtype=D64), 2 * torch.eye(2), W)))
    rows = {(r["layer"], r["direction"], r["block"]): r for r in probes.spectral(gru)}
    assert len(rows) == 2 * 2 * 4
    n = rows[(1, 1, "n")]
    assert n["sigma_max"] == pytest.approx(float(torch.linalg.svdvals(W)[0]), rel=1e-14)
    assert n["spectral_radius"] == pytest.approx(0.5, rel=1e-14)
    assert n["regime"] == "may explode"
    assert rows[(1, 1, "r")]["regime"] == "critical"
    assert rows[(1, 1, "z")]["sigma_max"] == pytest.approx(2.0)
    assert rows[(1, 1, "W_hh")]["spectral_radius"] is None  # 6×2, not square
    whole = torch.linalg.svdvals(gru.weight_hh_l1_reverse.detach())
    torch.testing.assert_close(rows[(1, 1, "W_hh")]["singular_values"], whole)


# ---- memory_length -----------------------------------------------------------------------------
@pytest.mark.parametrize("r,thr,T", [(0.5, 1e-3, 40), (0.9, 1e-2, 100), (0.8, 1e-3, 10),
                                      (0.95, 1e-3, 50)])
def test_memory_length_geometric(r, thr, T):
    g = [r ** (T - 1 - t) for t in range(T)]
    want = min(T - 1, math.floor(math.log(thr) / math.log(r) + 1e-9))
    assert probes.memory_length(g, thr) == want
    assert probes.memory_length(torch.tensor(g) * 7.0, thr) == want  # relative to the last value


def test_memory_length_stops_at_first_dip():
    assert probes.memory_length([1.0, 1.0, 1e-5, 1.0, 1.0], threshold=1e-3) == 1
    with pytest.raises(ValueError):
        probes.memory_length(torch.ones(2, 3))


# ---- gate statistics ---------------------------------------------------------------------------
def test_gate_stats_closed_form_and_layout():
    """Zero weights and chosen biases: every gate is a known constant."""
    H = 3
    lstm = rnnlab.LSTM(2, H, num_layers=2, batch_first=True)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.bias_ih_l0[:H] = 5.0  # i = σ(5) = 0.9933 (saturated)
        lstm.bias_ih_l0[H:2 * H] = -1.0  # f = σ(−1) = 0.269
        lstm.bias_ih_l0[2 * H:3 * H] = 2.0  # g = tanh(2) = 0.964 (saturated, |g| > 0.95)
    st = probes.gate_stats(lstm, torch.randn(2, 5, 2))
    assert set(st) == {"i", "f", "g", "o"}
    sig = lambda v: 1 / (1 + math.exp(-v))
    for name, val, sat in [("i", sig(5), 1.0), ("f", sig(-1), 0.0), ("g", math.tanh(2), 1.0),
                           ("o", 0.5, 0.0)]:
        s = st[name]
        assert s["mean"].shape == (2, 5) and s["hist"].shape == (2, 5, probes.HIST_BINS)
        torch.testing.assert_close(s["mean"][0], torch.full((5,), val))
        torch.testing.assert_close(s["saturated"][0], torch.full((5,), sat))
        torch.testing.assert_close(s["run_hist"].sum(1), torch.ones(2))
    # layer 1 (zero biases): i = f = o = 0.5, g = 0 -> bin containing 0.5, bin containing 0
    i_bin = int(0.5 * probes.HIST_BINS)
    assert st["i"]["run_hist"][1, i_bin] == 1.0
    assert st["g"]["run_hist"][1, probes.HIST_BINS // 2] == 1.0
    assert st["g"]["edges"][0] == -1 and st["i"]["edges"][0] == 0




@pytest.mark.parametrize("mode,kw", [("LSTM", {}), ("GRU", {}), ("RNN", {}),
                                     ("RNN", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_gate_stats_agree_with_telemetry(mode, kw, packed):
    """Every gate (σ and tanh) and the RNN's h, 2 layers × 2 directions, per step; with packed
    input of several lengths, both count the sequences active at each step."""
    layer = getattr(rnnlab, mode)(3, 5, num_layers=2, batch_first=True, bidirectional=True,
                                  **kw).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(4.0)  # large weights: plenty of saturated values to count
    x = torch.randn(4, 9, 3, dtype=D64)
    if packed:
        x = pack_padded_sequence(x, torch.tensor([7, 9, 2, 5]), batch_first=True,
                                 enforce_sorted=False)
    with rnnlab.trace(layer) as tr:
        out = layer(x)[0]
        (out.data if packed else out).sum().backward()
    ours = probes.gate_stats(layer, x)
    assert set(ours) == set(tr.gates)
    for name, theirs in tr.gates.items():
        assert theirs["saturated"].sum() > 0  # the comparison sees saturated values
        torch.testing.assert_close(ours[name]["mean"].double(), theirs["mean"].double(),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours[name]["saturated"].double(),
                                   theirs["saturated"].double(), rtol=0, atol=1e-6)


# ---- every probe takes what the module takes ----------------------------------------------------
def _pair(mode, **kw):
    """(batch-first layer, time-major layer) with the same weights: 2 layers, 2 directions."""
    bf = getattr(rnnlab, mode)(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                               dtype=D64, **kw)
    tm = getattr(rnnlab, mode)(3, 4, num_layers=2, bidirectional=True, dtype=D64, **kw)
    tm.load_state_dict(bf.state_dict())
    return bf, tm


def _checklist(m, x, hx=None):
    """The checklist's numbers (every row but the input-shape line, and the raw probes)."""
    res = probes.checklist(m, x)
    p = res["probes"]
    return {"rows": [(r["check"], r["value"], r["status"]) for r in res["rows"]
                     if r["check"] != "shapes"],
            **{k: p[k] for k in ("jacobian_batch", "c_path", "lyapunov", "gates")}}


PROBES = {
    "jacobian_norms": lambda m, x, hx=None: probes.jacobian_norms(m, x, reduce="none", hx=hx),
    "jacobian_norms_reverse": lambda m, x, hx=None: probes.jacobian_norms(
        m, x, reduce="none", direction=1, hx=hx),
    "lyapunov_spectrum": lambda m, x, hx=None: probes.lyapunov_spectrum(
        m, x, k=3, warmup=1, reduce="none", hx=hx),
    "gate_stats": lambda m, x, hx=None: probes.gate_stats(m, x, hx=hx),
    "checklist": _checklist,
}


def _assert_same(a, b):
    """The same result: equal nested dicts / lists / numbers, tensors to float precision."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            _assert_same(u, v)
    elif isinstance(a, torch.Tensor):
        tol = {"rtol": 1e-10, "atol": 1e-12} if a.dtype == D64 else {}
        torch.testing.assert_close(a, b, **tol)
    else:
        assert a == b


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_every_probe_reads_the_module_layout(mode, probe):
    """A batch-first and a time-major layer with the same weights, fed the same sequences (and
    initial state) each in its own layout, give the same answer."""
    bf, tm = _pair(mode)
    x = torch.randn(2, 7, 3, dtype=D64)  # (B, T, I)
    h0 = torch.randn(4, 2, 4, dtype=D64)
    hx = (h0, torch.randn_like(h0)) if mode == "LSTM" else h0
    if probe == "checklist":
        hx = None  # the checklist runs from the state the module starts from
    got = PROBES[probe](bf, x, hx=hx)
    _assert_same(got, PROBES[probe](tm, x.transpose(0, 1), hx=hx))
    if probe.startswith("jacobian"):
        assert got.shape == (2, 7)


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_is_a_batch_of_one(mode, probe):
    """One (T, I) sequence gives what a batch of that one sequence gives (without the batch
    dimension where the probe keeps one)."""
    _, tm = _pair(mode)
    x = torch.randn(7, 3, dtype=D64)
    h0 = torch.randn(4, 4, dtype=D64)
    hx1 = (h0, h0.cos()) if mode == "LSTM" else h0
    hxb = tuple(s.unsqueeze(1) for s in hx1) if mode == "LSTM" else h0.unsqueeze(1)
    if probe == "checklist":
        hx1 = hxb = None
    one = PROBES[probe](tm, x, hx=hx1)
    batch = PROBES[probe](tm, x.unsqueeze(1), hx=hxb)
    if probe in ("jacobian_norms", "jacobian_norms_reverse", "lyapunov_spectrum"):
        batch = batch[0]  # reduce="none": (B, ·) for a batch, (·) for one sequence
    _assert_same(one, batch)


@pytest.mark.parametrize("probe", PROBES)
def test_packed_equal_lengths_equals_padded(probe):
    bf, _ = _pair("LSTM")
    x = torch.randn(3, 6, 3, dtype=D64)
    packed = pack_padded_sequence(x, torch.tensor([6, 6, 6]), batch_first=True)
    _assert_same(PROBES[probe](bf, packed), PROBES[probe](bf, x))


def test_packed_sequences_of_several_lengths():
    """gate_stats: each sequence counts at the steps it has, as if each were run alone (one
    unbatched run per sequence, combined by hand); the Jacobian probes refuse (no common final
    step)."""
    _, tm = _pair("GRU")
    lengths = [5, 2, 4]
    seqs = [torch.randn(n, 3, dtype=D64) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(seqs)  # (T, B, I)
    packed = pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=False)
    got = probes.gate_stats(tm, packed)
    alone = [probes.gate_stats(tm, s) for s in seqs]
    n = torch.tensor(lengths, dtype=D64)
    for name in got:
        for stat in ("run_mean", "run_saturated", "run_hist"):  # weighted by length
            want = sum(a[name][stat].double() * w for a, w in zip(alone, n, strict=True)) / n.sum()
            torch.testing.assert_close(got[name][stat].double(), want, rtol=1e-6, atol=1e-7)
        for t in range(max(lengths)):  # the mean of the sequences that have step t
            active = [a[name]["mean"][:, t] for a, m in zip(alone, lengths, strict=True) if m > t]
            torch.testing.assert_close(got[name]["mean"][:, t], sum(active) / len(active))
    for fn in (probes.jacobian_norms, probes.lyapunov_spectrum, probes.checklist):
        with pytest.raises(ValueError, match="equal-length"):
            fn(tm, packed)


def test_time_major_input_is_read_time_major():
    """The issue's case: a (T, 1, I) input to a default (time-major) layer is one sequence of
    T steps, not T sequences of one step."""
    rnn = _linear_rnn(0.5)
    tm = rnnlab.RNN(3, 6).double()
    tm.load_state_dict(rnn.state_dict())
    x = torch.randn(10, 1, 3, dtype=D64)
    got = probes.jacobian_norms(tm, x)
    assert got.shape == (10,)
    torch.testing.assert_close(got, 0.5 ** (9 - torch.arange(10, dtype=D64)), rtol=1e-12, atol=0)


def test_errors():
    with pytest.raises(ValueError, match="no rnnlab"):
        probes.spectral(nn.Linear(2, 2))
    gru = rnnlab.GRU(2, 3)
    with pytest.raises(ValueError, match="LSTM only"):
        probes.jacobian_norms(gru, torch.randn(4, 1, 2), path="c")
    with pytest.raises(ValueError, match="k must"):
        probes.lyapunov_spectrum(gru, torch.randn(4, 1, 2), k=9)



@pytest.mark.cuda
def test_probes_on_cuda_match_cpu():
    lstm = rnnlab.LSTM(3, 5, num_layers=2, batch_first=True)
    x = torch.randn(2, 9, 3)
    cpu = (probes.jacobian_norms(lstm, x), probes.lyapunov_spectrum(lstm, x, k=3),
           probes.gate_stats(lstm, x)["f"]["mean"])
    lstm_c, x_c = lstm.cuda(), x.cuda()
    gpu = (probes.jacobian_norms(lstm_c, x_c), probes.lyapunov_spectrum(lstm_c, x_c, k=3),
           probes.gate_stats(lstm_c, x_c)["f"]["mean"])
    for a, b in zip(cpu, gpu, strict=True):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=1e-6, atol=1e-6)

# ---- plots -------------------------------------------------------------------------------------
def test_plot_companions_return_figures(tmp_path):
    from matplotlib.figure import Figure

    from rnnlab import plots

    lstm = rnnlab.LSTM(2, 3, num_layers=2, batch_first=True)
    x = torch.randn(2, 8, 2)
    figs = [
        plots.plot_jacobian_norms(probes.jacobian_norms(lstm, x), theory_r=0.8),
        plots.plot_jacobian_norms({"h,c": probes.jacobian_norms(lstm, x),
                                   "c path": probes.jacobian_norms(lstm, x, path="c")}),
        plots.plot_spectrum(probes.spectral(lstm)),
        plots.plot_lyapunov(probes.lyapunov_spectrum(lstm, x, warmup=2)),
        plots.plot_gate_stats(probes.gate_stats(lstm, x)),
    ]
    for k, fig in enumerate(figs):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"{k}.png", dpi=50)
        assert (tmp_path / f"{k}.png").stat().st_size > 0


# ---- rnnlab inspect ----------------------------------------------------------------------------
def _tiny_run(root):
    """A 2-step run written by rnnlab.runs.train_run."""
    from rnnlab import runs

    cfg = runs.new_config("shakespeare", {"seq_len": 8},
                          dict(backbone="rnn", hidden_size=8, num_layers=1),
                          steps=2, batch_size=2, eval_every=2, eval_batches=1, checkpoint_every=2)
    return runs.train_run(root / "run", cfg, progress=False).out


def _invoke(args):
    from click.testing import CliRunner

    from rnnlab.cli import main

    return CliRunner().invoke(main, args)


def test_inspect_cli_on_a_tiny_run(tmp_path):
    run = _tiny_run(tmp_path)
    res = _invoke(["inspect", str(run), "--seq-len", "12", "--batch-size", "1"])
    assert res.exit_code == 0, res.output
    for check in ("shapes", "σ_max(W_hh) l0", "saturation h", "gradient memory", "exploding",
                  "Lyapunov"):
        assert check in res.output
    figs = sorted(p.name for p in (run / "figures").iterdir())
    want = ["inspect_gates.png", "inspect_jacobian.png", "inspect_lyapunov.png",
            "inspect_spectrum.png"]
    assert "loss gradient" in res.output  # the loss gradient through time, from rnnlab.trace
    assert figs == sorted(want + ["inspect_grad.png", "learning_curves.png"])
    # the σ_max line carries the number torch computes for the checkpoint's W_hh
    w = torch.load(run / "last.pt", weights_only=True)["model"]["backbone.weight_hh_l0"]
    assert f"{float(torch.linalg.svdvals(w.double())[0]):.4g}" in res.output
    # a loose checkpoint outside any run directory: the table, but no figures written
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "x.pt").write_bytes((run / "last.pt").read_bytes())
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question.")
    res = _invoke(["inspect", str(loose / "x.pt"), "--text", str(text)])
    assert res.exit_code == 0, res.output
    assert "none written" in res.output and not (loose / "figures").exists()


def test_inspect_cli_errors_exit_2(tmp_path):
    res = _invoke(["inspect", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "error:" in res.output
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    res = _invoke(["inspect", str(bogus)])
    assert res.exit_code == 2 and "error:" in res.output


def test_trajectory_probes_refuse_an_lstm_with_projection():
    # their closed forms take W_hh as the state-to-state map; with proj_size h_t = W_hr m_t
    lstm = rnnlab.LSTM(3, 5, proj_size=2)
    x = torch.randn(4, 2, 3)
    for probe in (probes.jacobian_norms, probes.gate_stats):
        with pytest.raises(ValueError, match="proj_size"):
            probe(lstm, x)
