"""Training: a run's plan, what trains in each stage, and the loop that runs it.

Owns plan.py (a config resolved once into the data, the model and the stages),
optim.py (the parameter masks and Keras' Adam), steps.py (the per-device train
and predict programs), feature_cache.py (frozen layers computed once),
checkpoint.py (Orbax, and reading a trained workdir back), metrics.py (the
rank correlations a stage is validated by) and train.py (the loop). May
import model, data and runtime; never results or serving.
"""
