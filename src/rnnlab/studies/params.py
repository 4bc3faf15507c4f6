"""params: parameter counts of RNN / LSTM / GRU / attention at equal widths.

The notes (rnns-vanishing-gradients-seq2seq.txt, the RNN/LSTM/GRU table): parameters per cell
~n², ~4n², ~3n² — "LSTM has ~4x more parameters than RNN". With input size I and hidden size H a
layer holds W_ih (G·H × I), W_hh (G·H × H) and two biases (G·H), G = 1, 4, 3 gate blocks:
count = G·(H·I + H·H + 2H), so the ratio is exactly 1 : 4 : 3. Single-head self-attention of
width d holds W_Q, W_K, W_V, W_O (d × d each) and 4 biases: 4d² + 4d.

Each rnnlab count is compared with torch.nn's for the same arguments.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from .. import plots
from ..attention import SelfAttention
from ..models import param_counts
from .common import Claim, StudyOutput, save_figure, table, write_results

NAME = "params"
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def closed_form(name: str, I: int, H: int) -> int:
    return GATES[name] * (H * I + H * H + 2 * H)  # G·(H·I + H·H + 2H)


def run(profile: str = "default", seed: int = 0, out: Path | str = Path(".")) -> dict:
    started = time.perf_counter()
    out = Path(out)
    shapes = [(64, 64), (128, 128), (256, 256), (128, 256)]  # (input, hidden); last: the notes'
    rows = []
    for I, H in shapes:
        row = {"input_size": I, "hidden_size": H}
        ours = param_counts(I, H, num_heads=1)  # rnnlab's backbones at width H
        for name, ref in (("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)):
            row[name] = ours[name]
            row[f"{name}_torch"] = count(ref(I, H))
            row[f"{name}_formula"] = closed_form(name, I, H)
        if I == H:
            row["attention_1head"] = count(SelfAttention(H))
            row["attention_1head_torch"] = count(nn.MultiheadAttention(H, 1))
            row["attention_1head_formula"] = 4 * H * H + 4 * H
            row["transformer_block"] = ours["attention"]
        rows.append(row)

    results = {"counts": rows,
               "ratios": [{"input_size": r["input_size"], "hidden_size": r["hidden_size"],
                           "lstm_over_rnn": r["lstm"] / r["rnn"],
                           "gru_over_rnn": r["gru"] / r["rnn"]}
                          for r in rows]}
    same = all(r[n] == r[f"{n}_torch"] == r[f"{n}_formula"] for r in rows for n in GATES)
    att_same = all(r["attention_1head"] == r["attention_1head_torch"]
                   == r["attention_1head_formula"] for r in rows if "attention_1head" in r)
    ratios = {f"{r['input_size']}x{r['hidden_size']}": [r["lstm"] / r["rnn"], r["gru"] / r["rnn"]]
              for r in rows}
    notes_row = rows[-1]
    claims = [
        Claim("torch_parity", "rnnlab.RNN/LSTM/GRU hold exactly torch.nn's parameter count "
              "(= G·(H·I + H² + 2H)) at every width.", "equal counts",
              {f"{r['input_size']}x{r['hidden_size']}": {n: r[n] for n in GATES} for r in rows},
              same),
        Claim("ratio_1_4_3", "Parameters per cell ~n² : ~4n² : ~3n² (RNN : LSTM : GRU).",
              "LSTM/RNN = 4, GRU/RNN = 3", ratios,
              all(abs(a - 4) < 1e-12 and abs(b - 3) < 1e-12 for a, b in ratios.values())),
        Claim("notes_example", "The notes' example nn.RNN/LSTM/GRU(128, 256): 'LSTM has ~4x more "
              "parameters than RNN'.", {"rnn": closed_form("rnn", 128, 256),
                                        "lstm": closed_form("lstm", 128, 256),
                                        "gru": closed_form("gru", 128, 256)},
              {n: notes_row[n] for n in GATES},
              all(notes_row[n] == closed_form(n, 128, 256) for n in GATES)),
        Claim("attention_count", "Single-head self-attention of width d: W_Q, W_K, W_V, W_O and "
              "biases, 4d² + 4d (same as torch.nn.MultiheadAttention).", "4d² + 4d",
              {r["hidden_size"]: r["attention_1head"] for r in rows if "attention_1head" in r},
              att_same),
    ]
    wide = rows[2]
    fig = plots.plot_bars({"rnn": wide["rnn"], "lstm": wide["lstm"], "gru": wide["gru"],
                           "attention (1 head)": wide["attention_1head"],
                           "attention block (+MLP)": wide["transformer_block"]},
                          title=f"Parameters at width {wide['hidden_size']} (input = hidden)",
                          ylabel="parameters")
    figures = [save_figure(fig, out, "param_counts")]
    config = {"shapes_input_hidden": shapes, "bias": True, "layers": 1}
    notes = ["Counts of one layer, bias=True, unidirectional; attention block = pre-norm "
             "Transformer block (self-attention + 4× MLP + LayerNorms), no positions."]
    tables = [table("Parameters of one layer (rnnlab = torch.nn)",
                    ["input", "hidden", "rnn", "lstm", "gru", "lstm/rnn", "gru/rnn",
                     "attention (1 head)", "attention block"],
                    [[r["input_size"], r["hidden_size"], r["rnn"], r["lstm"], r["gru"],
                      r["lstm"] / r["rnn"], r["gru"] / r["rnn"], r.get("attention_1head", "—"),
                      r.get("transformer_block", "—")] for r in rows])]
    return write_results(out, StudyOutput(NAME, profile, seed, config, results, claims, figures,
                                          notes, tables), started)
