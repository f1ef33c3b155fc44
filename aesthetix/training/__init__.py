"""Training: a run's plan, what trains in each stage, and the loop that runs it.

Owns plan.py (a config resolved once into the data, the model and the stages),
optim.py (the parameter masks and Keras' Adam), forward.py (the per-device
predict program, and what a batch holds), steps.py (the per-device train
program), feature_cache.py (frozen layers computed once), checkpoint.py
(Orbax), params_file.py (the newest checkpoint's params as a plain file,
for scoring without Orbax), digests.py (what both check their arrays
against), trained.py (reading a trained workdir back: `load_trained`),
transfer.py (a run started from a trained workdir), quantiles.py (the
distribution of a model's training predictions, a score's percentile),
metrics.py (the rank correlations a stage is validated by) and train.py (the
loop). May import model, data and runtime; never results or serving.
"""
