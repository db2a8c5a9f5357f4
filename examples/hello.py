"""The fabric core demo: local, remote, map and spawn calls on the embedded fabric.

Run it with `gpufabric run examples/hello.py` (or `python examples/hello.py`).
"""
import core_executor as fabric

app = fabric.App("hello")


@app.function(cpu=1, memory=512, timeout=60, retries=2)
def square(x: int) -> int:
    print(f"squaring {x}")  # appears in the caller's terminal, prefixed
    return x * x


@app.local_entrypoint()
def main():
    print(square.local(3), square.remote(4))
    print(sum(square.map(range(200))))
    call = square.spawn(5)
    print(call.get(timeout=30))


if __name__ == "__main__":
    with app.run():
        main()
