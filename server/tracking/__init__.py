"""The fleet in MLflow: one run per device and model version (`runs`), fed off the import path (`bridge`),
earlier per-package runs folded in (`migrate`), and MLflow's own UI on the same store (`ui`)."""
