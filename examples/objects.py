"""Dict and Queue: state shared by the caller and its containers, kept by the fabric.

Run it with `gpufabric run examples/objects.py`.
"""
import core_executor as fabric

app = fabric.App("objects-demo")
# Named objects are found (or created) on first use, here or in a container.
results = fabric.Dict.from_name("objects-demo-results", create_if_missing=True)


@app.function()
def work(job: int, progress: fabric.Queue) -> int:
    results[f"job-{job}"] = job * job
    progress.put({"job": job, "square": job * job})
    return job


@app.function()
def elect(candidate: int) -> bool:
    # Compare-and-set: exactly one candidate stores its id.
    return results.put("leader", candidate, skip_if_exists=True)


@app.local_entrypoint()
def main():
    results.clear()
    # An ephemeral Queue lives for the `with` block; passed to containers as a reference.
    with fabric.Queue.ephemeral() as progress:
        work.for_each(range(10), [progress] * 10)
        events = []
        while len(events) < 10:
            events += progress.get_many(10, timeout=30)
    print("squares:", sorted(event["square"] for event in events))
    print("dict entries:", len(results), "job-7 ->", results["job-7"])
    won = list(elect.map(range(5)))
    print("leaders elected:", won.count(True), "leader ->", results["leader"])
