/* A stand-in experiment for the --command tests: command_exp SIZE LR SEED.
 * Draws SIZE numbers from a splitmix64 stream seeded with SEED and prints one JSON
 * line of results. LR must arrive as typed ("1e-5", not "1e-05"): size 300 with
 * lr 1e-5 "diverges" (exit 3, a message on stderr), as one failing grid point. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: command_exp SIZE LR SEED\n");
        return 2;
    }
    long size = atol(argv[1]);
    double lr = atof(argv[2]);
    uint64_t seed = strtoull(argv[3], NULL, 10);
    fprintf(stderr, "size %ld lr %s seed %" PRIu64 "\n", size, argv[2], seed);
    if (size == 300 && strcmp(argv[2], "1e-5") == 0) {
        fprintf(stderr, "diverged: size 300 with lr 1e-5\n");
        return 3;
    }
    double sum = 0.0;
    for (long i = 0; i < size; i++)
        sum += (double)(next(&seed) >> 11) * 0x1.0p-53;
    printf("training done\n");
    printf("{\"loss\": %.17g, \"size\": %ld, \"lr\": %.17g}\n", lr * sum / size, size, lr);
    return 0;
}
