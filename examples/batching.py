"""@fabric.batched: callers send single inputs; the function gets them in lists.

Run it with `gpufabric run examples/batching.py` (or `python examples/batching.py`).
"""
import core_executor as fabric

app = fabric.App("batching")


@app.function(max_containers=1)
@fabric.batched(max_batch_size=16, wait_ms=100)
def embed(texts: list[str]) -> list[int]:
    # One model call for the whole batch; one output per input, in order.
    print(f"embedding a batch of {len(texts)}")
    return [len(t) for t in texts]


@app.cls(max_containers=1)
class Tokenizer:
    @fabric.batched(max_batch_size=8, wait_ms=50)
    def count(self, texts: list[str], seps: list[str]) -> list[int]:
        return [len(t.split(s)) for t, s in zip(texts, seps)]


@app.local_entrypoint()
def main():
    print(embed.remote("hello"))  # a batch of one
    words = [f"word{i}" for i in range(40)]
    print(list(embed.map(words)))  # runs in batches of up to 16
    print(list(Tokenizer().count.map(["a b c", "a,b"], [" ", ","])))


if __name__ == "__main__":
    with app.run():
        main()
