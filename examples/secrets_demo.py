"""Secrets: values that reach a container's environment, and nowhere else the fabric shows.

Run it with `gpufabric run examples/secrets_demo.py` (not named secrets.py: that would shadow the
standard library's `secrets` module).

For a secret shared by many apps, create it once and refer to it by name:

    gpufabric secret create demo-api API_KEY=...     (or --from-dotenv .env)
    @app.function(secrets=[fabric.Secret.from_name("demo-api")])

This example makes its own with Secret.from_dict, so it runs on a fresh machine. Keep secret
values out of the source file (read them from the environment, as here): the source of an app
travels to the fabric with its functions.
"""
import hashlib
import os

import core_executor as fabric

app = fabric.App("secrets-demo")
api_key = fabric.Secret.from_dict({"DEMO_API_KEY": os.environ.get("DEMO_API_KEY") or os.urandom(16).hex()})


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@app.function(secrets=[api_key])
def use_the_key() -> str:
    # A real function would call an API with it; it never prints or returns the value.
    return fingerprint(os.environ["DEMO_API_KEY"])


@app.local_entrypoint()
def main():
    expected = fingerprint(api_key.values["DEMO_API_KEY"])
    seen = use_the_key.remote()
    print("the container got DEMO_API_KEY:", seen == expected)
    print("its fingerprint:", seen)
