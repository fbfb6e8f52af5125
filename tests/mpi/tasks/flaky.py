"""Fails for some tasks, to check failures are recorded and the run goes on."""


def grid():
    return {"x": [1, 2, 3, 4, 5]}


def task(params, rng, ctx):
    if params["x"] == 3:
        raise ValueError(f"x=3 is not allowed (task {ctx.task_id})")
    return {"y": params["x"] * rng.random(), "rank": ctx.rank, "size": ctx.size}
