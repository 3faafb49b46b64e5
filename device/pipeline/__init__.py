"""The per-frame pipeline: extract (TFLite) -> transform (standardize + PCA) -> classify (kNN)."""
