"""aesthetix: multi-task CNN for image aesthetic assessment in JAX/Flax."""
