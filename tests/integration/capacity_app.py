"""An app whose function needs a GPU, so that the fabric launches a machine for it (capacity tests)."""
import os
import time

import core_executor as fabric

app = fabric.App("capacity-demo")


@app.function(gpu="L4")
def on_gpu(seconds: float = 0.0) -> str:
    time.sleep(seconds)
    return "ran on GPU " + os.environ.get("CUDA_VISIBLE_DEVICES", "?")
