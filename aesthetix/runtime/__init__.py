"""The plumbing under every wing: devices, processes and the workdir's files.

Owns the data-parallel plumbing (parallel.py: the mesh, per-device programs,
gathers, barriers), the device-aware defaults, the workdir's layout and its
atomic writes, lock and config guard (workdir.py), the errors a user can
cause (errors.py), progress bars and the path checks the command line makes
before JAX loads (preflight.py), JAX's persistent compilation cache
(compilation_cache.py), a run's wall time by phase (phases.py) and
TensorBoard's files (summaries.py). Imports nothing else of aesthetix.
"""
