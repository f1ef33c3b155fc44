"""Using a trained model: scoring photos, explaining a score, shipping the model.

Owns scorer.py (`aesthetix.Scorer`, the one scoring path), predict.py (a
folder of photos to a CSV or JSON), gradcam.py (heatmaps) and export.py
(SavedModel, StableHLO, TFLite). May import training (to read a workdir
back), model, data and runtime; never results.
"""
