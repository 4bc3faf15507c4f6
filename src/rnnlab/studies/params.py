"""params: parameter counts of RNN / LSTM / GRU / attention at equal widths.

The notes (Section 3.1, the RNN/LSTM/GRU table): parameters per cell ~n², ~4n², ~3n² — "LSTM has
~4x more parameters than RNN". With input size I and hidden size H a layer holds W_ih (G·H × I),
W_hh (G·H × H) and two biases (G·H), G = 1, 4, 3 gate blocks: count = G·(H·I + H·H + 2H), so the
ratio is exactly 1 : 4 : 3. Single-head self-attention of width d holds W_Q, W_K, W_V, W_O
(d × d each) and 4 biases: 4d² + 4d. Counting is deterministic: one run, whatever the seeds.
"""

from __future__ import annotations

from torch import nn

from .. import plots
from ..attention import SelfAttention
from ..models import param_counts
from ..seeding import fingerprint, seed_everything
from .claims import claim, every, source
from .common import Runs, Summary, specs, table
from .stats import measurement

NAME = "params"
SEEDS = {"quick": 1, "default": 1, "full": 1}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
SHAPES = [(64, 64), (128, 128), (256, 256), (128, 256)]  # (input, hidden); last: the notes'
SRC = source("seq2seq", "§4, the RNN / LSTM / GRU comparison table and Code Fragment 3.1.2",
             "Hochreiter & Schmidhuber 1997; Cho et al. 2014")
INTRO = {
    "title": "Parameter counts",
    "question": "Does an LSTM hold four times the parameters of a vanilla RNN, and a GRU three?",
    "quote": "Parameters (per cell): ~n² (RNN), ~4n² (LSTM), ~3n² (GRU). … LSTM has ~4x more "
             "parameters than RNN.",
    "source": SRC,
    "method": "Count the parameters of rnnlab's layers and of torch.nn's at four shapes and "
              "compare them with the closed form G·(H·I + H² + 2H), G = 1, 4, 3.",
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def closed_form(name: str, I: int, H: int) -> int:
    return GATES[name] * (H * I + H * H + 2 * H)  # G·(H·I + H·H + 2H)


def plan(profile: str, seeds: list[int]):
    return specs(NAME, profile, seeds[:1], {"count": {"shapes": SHAPES}}, cost=0.5)


def run_one(spec) -> dict:
    seed_everything(spec.seed)
    rows = []
    for I, H in spec.settings["shapes"]:
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
    return {"init_fingerprint": fingerprint(SelfAttention(8)), "counts": rows}


def summarise(runs: Runs, profile: str, seeds: list[int]) -> Summary:
    r = runs.first("count")
    rows = r["counts"] if r else []
    sd = [r["seed"]] if r else []
    exact = lambda ok: measurement([1.0 if ok else 0.0] if r else [], sd)
    same = all(x[n] == x[f"{n}_torch"] == x[f"{n}_formula"] for x in rows for n in GATES)
    att = [x for x in rows if "attention_1head" in x]
    att_same = all(x["attention_1head"] == x["attention_1head_torch"]
                   == x["attention_1head_formula"] for x in att)
    ratios = {f"{x['input_size']}x{x['hidden_size']}": [x["lstm"] / x["rnn"],
                                                       x["gru"] / x["rnn"]] for x in rows}
    ratio_ok = all(abs(a - 4) < 1e-12 and abs(b - 3) < 1e-12 for a, b in ratios.values())
    notes_row = rows[-1] if rows else {}
    notes_ok = bool(rows) and all(notes_row[n] == closed_form(n, 128, 256) for n in GATES)
    claims = [
        claim("ratio_1_4_3", "Per layer, LSTM : RNN = 4 and GRU : RNN = 3 exactly, at every "
              "shape (G·(H·I + H² + 2H), G = 1, 4, 3).", INTRO["quote"], SRC,
              every("both ratios exact at all four shapes"), "LSTM/RNN = 4, GRU/RNN = 3",
              exact(ratio_ok), arms=("count",)),
        claim("notes_example", "The notes' example nn.RNN/LSTM/GRU(128, 256) holds "
              f"{closed_form('rnn', 128, 256):,} / {closed_form('lstm', 128, 256):,} / "
              f"{closed_form('gru', 128, 256):,} parameters.",
              "input_size, hidden_size = 128, 256 … LSTM has ~4x more parameters than RNN.",
              SRC, every("rnnlab's counts equal the closed form"),
              "98,816 / 395,264 / 296,448", exact(notes_ok), arms=("count",)),
        claim("torch_parity", "rnnlab.RNN/LSTM/GRU hold exactly torch.nn's parameter count at "
              "every shape.", "(torch.nn compatibility: same parameters, names and shapes)",
              source("seq2seq", "§2, Code Fragment 3.1.2 (nn.RNN / nn.LSTM / nn.GRU)"),
              every("rnnlab = torch.nn = closed form"), "equal counts", exact(same),
              arms=("count",), kind="finding"),
        claim("attention_count", "Single-head self-attention of width d holds 4d² + 4d "
              "parameters (W_Q, W_K, W_V, W_O and biases), as torch.nn.MultiheadAttention.",
              "Q = X W_Q, K = X W_K, V = X W_V … y_T = W_o Y_T",
              source("side", "Model 3 — Self-attention (single-head)",
                     "Vaswani et al. 2017"), every("rnnlab = torch.nn = 4d² + 4d"),
              "4d² + 4d", exact(att_same and bool(att)), arms=("count",)),
    ]
    figures = []
    wide = next((x for x in rows if x["hidden_size"] == 256 and x["input_size"] == 256), None)
    if wide:
        fig = plots.plot_bars({"RNN": wide["rnn"], "LSTM": wide["lstm"], "GRU": wide["gru"],
                               "attention, 1 head": wide["attention_1head"],
                               "Transformer block (+MLP)": wide["transformer_block"]},
                              title="Parameters of one layer at width 256 (input = hidden)",
                              xlabel="parameters")
        figures.append(("param_counts", fig,
                        "Read the bar lengths against the RNN's: the LSTM's is exactly 4× and "
                        "the GRU's 3× (four and three gate blocks of the same shape). "
                        "Single-head attention (4d² + 4d) sits near the GRU; a whole "
                        "Transformer block (attention + 4× MLP) is larger than the LSTM."))
    tables = [table("Parameters of one layer (rnnlab = torch.nn = closed form)",
                    ["input", "hidden", "rnn", "lstm", "gru", "lstm/rnn", "gru/rnn",
                     "attention (1 head)", "attention block"],
                    [[x["input_size"], x["hidden_size"], x["rnn"], x["lstm"], x["gru"],
                      x["lstm"] / x["rnn"], x["gru"] / x["rnn"], x.get("attention_1head", "—"),
                      x.get("transformer_block", "—")] for x in rows])]
    notes = ["Counts of one layer, bias=True, unidirectional; attention block = pre-norm "
             "Transformer block (self-attention + 4× MLP + LayerNorms), no positions. Exact "
             "counts: one run, the verdict is equality, not an interval."]
    return Summary(claims, figures, tables, notes, {"shapes_input_hidden": SHAPES},
                   {"ratios": ratios})
