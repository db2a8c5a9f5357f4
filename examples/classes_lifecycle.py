"""A class with a lifecycle: load once per container (@enter), serve methods, clean up (@exit).

Run it with `gpufabric run examples/classes_lifecycle.py` (or `python examples/classes_lifecycle.py`).
"""
import time

import core_executor as fabric

app = fabric.App("classes-lifecycle")


@app.cls(cpu=1, scaledown_window=5)
class Model:
    # A constructor parameter: Model(scale=3) gets containers of its own.
    scale: int = fabric.parameter(default=1)

    @fabric.enter()
    def load(self):
        print(f"loading weights for scale={self.scale} (once per container)")
        time.sleep(0.5)  # stands for reading a model from disk
        self.weights = [self.scale] * 4

    @fabric.method()
    def predict(self, x: int) -> int:
        return x * sum(self.weights)

    @fabric.method()
    def explain(self, x: int):
        for i, w in enumerate(self.weights):
            yield f"weight {i}: {x} * {w}"

    @fabric.exit()
    def unload(self):
        print("unloading (the container is shutting down)")


@app.local_entrypoint()
def main():
    model = Model()
    print(model.predict.remote(1), model.predict.remote(2))  # the second call reuses the loaded weights
    print(list(model.predict.map(range(5))))
    for line in model.explain.remote_gen(3):
        print(line)
    print(Model(scale=3).predict.remote(1))


if __name__ == "__main__":
    with app.run():
        main()
