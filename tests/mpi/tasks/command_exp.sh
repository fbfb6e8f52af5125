#!/bin/sh
# A stand-in experiment for the --command tests: command_exp.sh SIZE LR SEED.
# LR must arrive as typed ("1e-5"): size 300 with lr 1e-5 "diverges" (exit 3).
# FAIL_ALL=1 fails every task (to test resume); SLEEP=N sleeps first.
echo "size $1 lr $2 seed $3" >&2
[ -n "$SLEEP" ] && sleep "$SLEEP"
if [ -n "$FAIL_ALL" ]; then echo "asked to fail" >&2; exit 1; fi
if [ "$1" = 300 ] && [ "$2" = 1e-5 ]; then echo "diverged: size 300 with lr 1e-5" >&2; exit 3; fi
echo "training done"
awk -v s="$1" -v lr="$2" -v seed="$3" 'BEGIN {
  printf "{\"loss\": %.17g, \"size\": %d, \"lr\": %.17g, \"seed_mod\": %d}\n",
         lr * ((seed % 1000003) / 1000003.0), s, lr, seed % 1000003 }'
