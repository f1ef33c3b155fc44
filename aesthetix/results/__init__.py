"""What a run shows: its report and figures beside the paper's numbers, statistics
over seeds, and the experiments that produce them.

Owns report.py (results.json, report.md), figures.py, paper.py (which of
configs/paper_numbers.py belong beside a run), stats.py (intervals, paired
differences, verdicts), evaluate.py (a trained workdir tested again, Table
11), experiment.py (train, then report) and reproduce.py (the whole paper over
seeds). May import training, model, data and runtime; never serving.
"""
