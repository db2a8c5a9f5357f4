"""A scheduled job: runs every weekday at 9:00 Paris time once deployed, and on demand with `run`.

    gpufabric run examples/cron_job.py          # one run now, on the embedded fabric
    gpufabric serve &                            # a long-lived fabric (prints URL and token)
    export GPUFABRIC_URL=... GPUFABRIC_TOKEN=...
    gpufabric deploy examples/cron_job.py       # now the schedule runs by itself
    gpufabric app history cron-job               # the runs, newest first
"""
import datetime

import core_executor as fabric

app = fabric.App("cron-job")

seen = fabric.Dict.from_name("cron-job-runs", create_if_missing=True)


@app.function(schedule=fabric.Cron("0 9 * * mon-fri", timezone="Europe/Paris"), retries=2)
def morning_report() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    seen[now] = "done"
    print(f"report generated at {now}")
    return now


@app.function(schedule=fabric.Period(minutes=5))
def every_five_minutes() -> None:
    print("still here")


@app.local_entrypoint()
def main():
    print("ran once:", morning_report.remote())
    print("runs recorded:", len(seen))


if __name__ == "__main__":
    with app.run():
        main()
