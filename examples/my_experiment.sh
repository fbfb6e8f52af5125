#!/bin/sh
# my_experiment: a stand-in for the RL slides' ./my_experiment, as any executable can be:
# SIZE steps of noisy gradient descent on a quadratic with learning rate LR.
#
#   my_experiment.sh -o FILE -n SIZE -lr LR [--seed SEED]
#
# Writes its loss curve to FILE (one value a line), says what it does on stderr, and
# prints one JSON object as its LAST stdout line: mpibatch --command stores its keys
# (loss, best, steps) as results, beside returncode. A non-zero exit is a failed task.
seed=1
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    -lr) lr=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "my_experiment: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$out" ] || [ -z "$n" ] || [ -z "$lr" ]; then
  echo "usage: my_experiment.sh -o FILE -n SIZE -lr LR [--seed SEED]" >&2
  exit 2
fi
case "$n" in
  ''|*[!0-9]*) echo "my_experiment: -n expects a number of steps, got '$n'" >&2; exit 2 ;;
esac
echo "my_experiment: $n steps at lr $lr (seed $seed) -> $out" >&2
awk -v n="$n" -v lr="$lr" -v seed="$seed" -v out="$out" 'BEGIN {
  srand(seed % 2147483647)            # this task'"'"'s seed: mpibatch derives it from its stream
  w = 3; best = 1e300
  for (t = 1; t <= n; t++) {
    grad = 2 * w + 0.5 * (rand() - 0.5)   # a noisy gradient of w^2
    w -= 100 * lr * grad
    loss = w * w
    if (loss < best) best = loss
    print loss > out
  }
  printf "{\"loss\": %.17g, \"best\": %.17g, \"steps\": %d}\n", loss, best, n
}'
