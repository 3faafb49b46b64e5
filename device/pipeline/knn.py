"""The kNN classifier under its former name: it lives in `device.knn`, shared by the pipeline, detectors and
adapter (which never import `device.pipeline`). Callers outside the device package still import it from here.
"""

from device.knn import BUNDLE, LEARNED, KNNClassifier, Neighbours, Snapshot

__all__ = ["BUNDLE", "LEARNED", "KNNClassifier", "Neighbours", "Snapshot"]
