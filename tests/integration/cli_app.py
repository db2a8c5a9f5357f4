"""An app the CLI tests deploy and run."""
import core_executor as fabric

app = fabric.App("cli-demo")


@app.function()
def greet(name: str = "world") -> str:
    print(f"greeting {name}")
    return f"hello {name}"


@app.local_entrypoint()
def main(name: str = "world", times: int = 1):
    for _ in range(times):
        print(greet.remote(name))
