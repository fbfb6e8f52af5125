def task(params, rng):
    return rng.normal()
