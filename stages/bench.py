"""`mango bench ...`: benchmark commands. Each sub-command lives in its own module `stages/bench_<name>.py`
exposing `command`; it is listed in BENCHES and registered here.
"""

from __future__ import annotations

import importlib

import typer

# (sub-command name, module under stages/, one-line help)
BENCHES: list[tuple[str, str, str]] = [
    ("neighbours", "bench_neighbours", "Exact Jaccard top-k at NUS-WIDE scale: the index vs the blocked product and scikit-learn, checked exact."),
    ("lemmatise", "bench_lemmatise", "The lemmatise step on NUS-WIDE-sized raw tags: time, memory, tokeniser before/after."),
    ("head", "bench_head", "MangoNet's head per training step at m = 3, 7, 15, beside its matrix products alone."),
    ("gpu", "bench_gpu", "Images/s and peak GPU memory of finetune, features, InsAtten, the nodes stage, MangoNet's head and in-batch co-attention at the paper's shapes."),
]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for _name, _module, _help in BENCHES:
    app.command(name=_name, help=_help)(importlib.import_module(f"stages.{_module}").command)
