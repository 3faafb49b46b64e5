"""Run the factory bundle on seeded digits frames and print the runtime, numpy version and outputs as JSON.

Executed with another venv's python (PYTHONPATH = repository root) to compare TFLite runtimes.
"""

import json
import sys

import numpy as np

from contract.bundle import load_bundle
from device.capture.digits import DigitsSource
from device.pipeline.extract import Extractor, interpreter_class

bundle = load_bundle(sys.argv[1])
extractor = Extractor(bundle)
frames = [f.image for f in DigitsSource(seed=11, limit=int(sys.argv[2]))]
outputs = [extractor(image) for image in frames]
json.dump(
    {
        "runtime": interpreter_class().__module__,
        "numpy": np.__version__,
        "predictions": [int(np.argmax(p)) for p, _ in outputs],
        "features": [f.round(4).tolist() for _, f in outputs[:5]],
    },
    sys.stdout,
)
