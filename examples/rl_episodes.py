"""Reinforcement learning: episodes of a small NumPy environment, per policy and seed.

The RL slides' workload: many independent episodes (policy x seed), each as long as the
agent survives. The environment is "cartpole-lite", an unstable point on a line: each
step the agent pushes left or right, gravity pulls the point away from 0, and the
episode ends when |x| > 1 or after MAX_STEPS steps. Each step's reward is 1 - x**2.

Episodes differ in length, so each task returns its rewards as a RAGGED array (declared
below): row i of /results/rewards holds task i's rewards, however many steps it lived.

    mpiexec -n 2 mpibatch run examples/rl_episodes.py --reps 100 --seed 9 --out rl.h5

3 policies x 100 seeds = 300 episodes: about 4 s at np=2 here. Then:

    df = mpibatch.open("rl.h5").to_pandas()
    print(df.groupby("policy")[["steps", "total"]].mean())   # "balance" lives longest
"""

import numpy as np

MAX_STEPS, DT, GRAVITY, PUSH, NOISE = 500, 0.05, 2.0, 3.0, 0.3

results = {"rewards": "ragged float64", "steps": "int64", "total": "float64"}


def grid():
    return {"policy": ["random", "lazy", "balance"]}


def act(policy: str, x: float, v: float, rng) -> float:
    """A push of -1 or +1."""
    if policy == "random":
        return float(rng.choice([-1.0, 1.0]))
    if policy == "lazy":  # pushes against the velocity only: drifts away slowly
        return -1.0 if v > 0 else 1.0
    return -1.0 if x + 0.5 * v > 0 else 1.0  # "balance": against where it is heading


def task(params, rng):
    x, v = rng.uniform(-0.1, 0.1, size=2)  # this seed's start
    rewards = []
    for _ in range(MAX_STEPS):
        a = act(params["policy"], x, v, rng)
        v += (GRAVITY * x + PUSH * a + NOISE * rng.normal()) * DT
        x += v * DT
        if abs(x) > 1:
            break
        rewards.append(1.0 - x * x)
    rewards = np.array(rewards)
    return {"rewards": rewards, "steps": rewards.size, "total": rewards.sum()}
