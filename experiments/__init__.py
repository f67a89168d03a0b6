"""Re-runs of the long-time-lag experiments of Hochreiter & Schmidhuber (1997), "Long Short-Term Memory".

Command line (``python -m experiments``, see :mod:`experiments.cli`)::

  python -m experiments run configs/<name>.toml [--set key=value ...] [--out DIR] [--resume] [--no-progress]
  python -m experiments report RUNS... [--out RESULTS.md]

A run trains every trial of one config (seeds x learning rates) in one jit-compiled, vmapped program and
writes ``DIR/config.toml`` (the resolved config), ``DIR/metrics.jsonl`` (one line per chunk of
``train.eval_every`` sequences), ``DIR/checkpoint.npz`` and ``DIR/summary.json``.

Modules:

* :mod:`experiments.config`: the TOML schema ([task], [model], [train], [train.stop], [run], [paper]) and
  its strict validation;
* :mod:`experiments.train`: the engine: state, the jitted ``run_chunk``, stopping rules, the final test;
* :mod:`experiments.runner`: the host loop: progress bar, metrics, checkpoints, resume, the summary;
* :mod:`experiments.checkpoint`: atomic ``.npz`` checkpoints (no pickle);
* :mod:`experiments.report`: tables beside the paper's rows and learning curves;
* :mod:`experiments.tasks`: the task generators (``make_task(name, **params)``).

Diagnostics of finished runs (each ``python -m experiments.<name> --help``):

* :mod:`experiments.adding_failures`: where trained adding / multiplication nets go wrong;
* :mod:`experiments.cell_states`: what a 1997 net's memory cells hold at the end of a sequence;
* :mod:`experiments.numpy_reference`: Exp 1's net and truncated RTRL again, in plain numpy.
"""
