"""rnnlab.data — corpora, tokenizers, synthetic tasks and batching with masks.

    from rnnlab.data import build_task, Batch, CharTokenizer, load_text, shakespeare_text
    task = build_task("shakespeare")            # or "text" (path=...), "a13", "adding",
    batch = task.batch("train", 32, generator)  # "copy", "selective-copy", "reverse", "classify"

Layout: ``text.py`` (shipped corpus, ``load_text``, ``CharTokenizer``, the LM task on a text,
by characters or words), ``words.py`` (``WordTokenizer``), ``a13.py`` (the tense grammar),
``synthetic.py`` (adding, copy memory, selective copy, reverse, classify), ``batching.py``
(``Batch``, padding, ``masked_mean``, ``pack``, ``batchify``), ``base.py`` (what every task
has), ``tasks.py`` (``build_task``).
"""

from .base import Task
from .batching import Batch, batchify, lengths_to_mask, masked_mean, pack, pad
from .tasks import TASKS, build_task, task_names
from .text import TOKENS, CharTokenizer, load_text, shakespeare_text, tokenizer_from_dict
from .words import WordTokenizer

__all__ = ["Batch", "CharTokenizer", "Task", "TASKS", "TOKENS", "WordTokenizer", "batchify",
           "build_task", "lengths_to_mask", "load_text", "masked_mean", "pack", "pad",
           "shakespeare_text", "task_names", "tokenizer_from_dict"]
