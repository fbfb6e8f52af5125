#!/usr/bin/env python3
"""A stand-in experiment for the --command tests (where no C compiler is): SIZE LR SEED."""

import json
import sys

size, lr_text, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
print(f"size {size} lr {lr_text} seed {seed}", file=sys.stderr)
if size == 300 and lr_text == "1e-5":
    sys.exit("diverged: size 300 with lr 1e-5")
print("training done")
print(json.dumps({"loss": float(lr_text) * (seed % 1000003) / 1000003.0, "size": size}))
