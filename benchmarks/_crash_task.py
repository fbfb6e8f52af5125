"""Every 20th task ends its process (os._exit): restarts of the task process, timed."""

import os


def task(params, rng):
    if params["rep"] % 20 == 19:
        os._exit(3)
    return rng.normal()
