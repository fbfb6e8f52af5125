"""Text cleaning of skewed records: the joblib talk's Amazon Fine Foods workflow.

Each task cleans one review (its ``rep`` is the record number): strip HTML tags and
URLs, lower-case, keep letters, drop stop words, collapse spaces, and returns the
cleaned text as a string result (declared below) with its word count. The records are
skewed as the talk warns: most reviews have tens of words, a few 30 times as many (a
record costs time in proportion), so ``--schedule auto`` picks dynamic and no rank waits on
a block of long ones. Records are made up here (RECORD_SEED), the same on every rank.

    mpiexec -n 2 mpibatch run examples/text_cleaning.py --reps 2000 --seed 1 --out clean.h5

2,000 records: about 5 s at np=2 here. Then:

    df = mpibatch.open("clean.h5").to_pandas()
    print(df.sort_values("n_words").tail(3)[["n_words", "clean"]])
"""

import re

import numpy as np

RECORD_SEED = 22
WORDS = "good great taste coffee Dog food bad The and is a this it of to I my product".split()
STOP = {"the", "and", "is", "a", "this", "it", "of", "to", "i", "my"}
TAG, URL, NOT_LETTER = re.compile(r"<[^>]+>"), re.compile(r"https?://\S+"), re.compile(r"[^a-z]+")

results = {"clean": "str", "n_words": "int64"}


def record(i: int) -> str:
    """Review ``i``: log-normal length (median 30 words), with HTML tags, digits and a URL."""
    rng = np.random.default_rng([RECORD_SEED, i])
    n = int(np.clip(rng.lognormal(np.log(30), 1.2), 1, 20_000))
    words = rng.choice(WORDS, size=n).tolist()
    return "<br />".join(f"{w}!! 5/5" if k % 7 == 3 else w for k, w in enumerate(words)) + (
        " see http://example.com/review" if n % 2 else ""
    )


def clean(text: str) -> str:
    text = NOT_LETTER.sub(" ", URL.sub(" ", TAG.sub(" ", text)).lower())
    return " ".join(w for w in text.split() if w not in STOP)


def task(params, rng):
    out = clean(record(int(params["rep"])))
    return {"clean": out, "n_words": len(out.split())}
