"""An independent reference for rnnlab.MinGRU / MinLSTM / LRU: the papers' step equations in
plain autograd, written here from the papers (not from rnnlab's code), run one step at a time
in a Python loop over the layer's own Parameters, with retain_grad() on every h_t so that
h_t.grad is the total gradient reaching the state.

    minGRU  (Feng et al. 2024):  z = σ(W_z x + b_z), h̃ = g(W_h x + b_h), h = (1 − z) h + z h̃
    minLSTM (Feng et al. 2024):  f, i = σ(W_f x + b_f), σ(W_i x + b_i),
                                 h = f/(f+i) h + i/(f+i) h̃
    LRU     (Orvieto et al. 2023): h = λ h + γ (B x), y = Re(C h) + D x,
                                   λ = exp(−exp(ν) + i exp(θ)), γ = exp(γ_log)
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab


def g(v):
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def params(layer, l, d):
    sfx = f"_l{l}" + ("_reverse" if d else "")
    return {name[: -len(sfx)]: p for name, p in layer.named_parameters() if name.endswith(sfx)}


def step(layer, p, x, h):
    """One step of the paper's equations: (h_t, {gate: values}) from x_t (B, I), h_{t−1}."""
    if isinstance(layer, rnnlab.LRU):
        lam = torch.exp(-torch.exp(p["nu_log"]) + 1j * torch.exp(p["theta_log"]))
        B = torch.complex(p["B_re"], p["B_im"])
        return lam * h + torch.exp(p["gamma_log"]) * (x.to(B.dtype) @ B.T), {}
    k = x @ p["weight_ih"].T + (p["bias_ih"] if "bias_ih" in p else 0)
    H = layer.hidden_size
    if isinstance(layer, rnnlab.MinGRU):
        z, h_tilde = torch.sigmoid(k[:, :H]), g(k[:, H:])
        return (1 - z) * h + z * h_tilde, {"z": z}
    i, f, h_tilde = torch.sigmoid(k[:, :H]), torch.sigmoid(k[:, H : 2 * H]), g(k[:, 2 * H :])
    f_n, i_n = f / (f + i), i / (f + i)
    return f_n * h + i_n * h_tilde, {"i": i_n, "f": f_n}


def readout(layer, p, h, x):
    if not isinstance(layer, rnnlab.LRU):
        return h
    C = torch.complex(p["C_re"], p["C_im"])
    D = p["D"]
    y = (h @ C.T).real + (x * D if D.dim() == 1 else x @ D.T)
    return y + p["bias"] if "bias" in p else y


def run(layer, x, lengths, h0):
    """x (T, B, I) padded, lengths (B,), h0 (L·D, B, N). Returns (output (T, B, D·H) zero at
    padding, h_n, {(k, t): h_t with retain_grad}, {(k, t): gates}, active (T, B))."""
    T, L, D = x.shape[0], layer.num_layers, layer.num_directions
    active = torch.arange(T)[:, None] < lengths[None, :]
    inp = list(x.unbind(0))
    hs, gs, h_n = {}, {}, []
    for l in range(L):
        outs = []
        for d in range(D):
            k, p = l * D + d, params(layer, l, d)
            h, out = h0[k], [None] * T
            for t in range(T - 1, -1, -1) if d else range(T):
                m = active[t][:, None]
                h_new, gates = step(layer, p, inp[t], h)
                h = torch.where(m, h_new, h)  # padding steps keep the state
                h.retain_grad()
                hs[k, t], gs[k, t] = h, {n: v.detach() for n, v in gates.items()}
                out[t] = readout(layer, p, h, inp[t]) * m
            outs.append(out)
            h_n.append(h)
        inp = [torch.cat([o[t] for o in outs], 1) for t in range(T)]
    return torch.stack(inp), torch.stack(h_n), hs, gs, active


def loss_of(output, h_n, weights):
    """A loss that reads every output position and the final states (complex for the LRU)."""
    return (output * weights[0]).sum() + (torch.view_as_real(h_n.to(torch.complex128)).tanh()
                                          * weights[1]).sum()


def forward(layer, x, lengths, h0, packed):
    """The layer on x (T, B, I), as a PackedSequence of ``lengths`` when ``packed``; returns
    (output padded to (T, B, ·), h_n)."""
    if not packed:
        return layer(x, h0)
    out, h_n = layer(pack_padded_sequence(x, lengths, enforce_sorted=False), h0)
    return pad_packed_sequence(out, total_length=x.shape[0])[0], h_n
