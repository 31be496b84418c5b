// What one message's copy costs when its destination is cold: a 65,676-byte memcpy (one 64 KiB read behind
// its SSM and smux headers) from one hot source into a ring of N destination buffers. With N = 1 the
// destination stays in cache; with rings larger than the L2 each copy writes to lines evicted since the
// ring came round, as a sender's copy into a fresh message would while the messages it keeps for a resume
// (up to a stream window's worth: 2 MiB at first, growing to 16 MiB) push them out. The last line is the
// sender's pattern: free the acknowledged message, allocate the next, copy into it. Not part of any build; docs/PERFORMANCE.md,
// "2026-12-07, eighteenth session".
//   clang -O2 -o /tmp/copy-cost Benchmarks/CopyCost/copy-cost.c && /tmp/copy-cost
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const size_t size = 65676;
    const int copies = 20000;
    char *source = malloc(size);
    memset(source, 1, size);
    for (int ring = 1; ring <= 256; ring *= 4) {
        char **destinations = malloc(sizeof(char *) * ring);
        for (int i = 0; i < ring; i++) {
            destinations[i] = malloc(size);
            memset(destinations[i], 0, size);
        }
        double start = now();
        for (int i = 0; i < copies; i++) memcpy(destinations[i % ring], source, size);
        double elapsed = now() - start;
        printf("ring of %3d destinations (%5.1f MiB): %5.1f GB/s, %.2f us per copy\n", ring,
               ring * size / 1048576.0, copies * size / elapsed / 1e9, elapsed / copies * 1e6);
        for (int i = 0; i < ring; i++) free(destinations[i]);
        free(destinations);
    }
    const int kept = 256;  // 16 MiB of messages waiting for their acknowledgement
    char **messages = calloc(kept, sizeof(char *));
    double start = now();
    for (int i = 0; i < copies; i++) {
        free(messages[i % kept]);
        messages[i % kept] = malloc(size);
        memcpy(messages[i % kept], source, size);
    }
    double elapsed = now() - start;
    printf("free, malloc and copy, %d kept (%.1f MiB): %5.1f GB/s, %.2f us per copy\n", kept,
           kept * size / 1048576.0, copies * size / elapsed / 1e9, elapsed / copies * 1e6);
    for (int i = 0; i < kept; i++) free(messages[i]);
    free(messages);
    free(source);
    return 0;
}
