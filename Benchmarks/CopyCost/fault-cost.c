// What a minor page fault costs here: the kernel mapping and zeroing a 4 KiB page on first touch, as when
// glibc gives the top of its heap back during a transfer and the next messages touch it again. Touches
// one byte per page of a fresh 64 MiB mapping, then again after MADV_DONTNEED (what a trim does), nine
// rounds. Not part of any build; docs/PERFORMANCE.md, "2026-12-07, nineteenth session".
//   clang -O2 -o /tmp/fault-cost Benchmarks/CopyCost/fault-cost.c && /tmp/fault-cost
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const size_t size = 64 << 20, page = 4096, pages = size / page;
    for (int round = 0; round < 9; round++) {
        volatile char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 1;
        madvise((void *)p, size, MADV_NOHUGEPAGE);  // 4 KiB pages even where transparent huge pages are always on
        double start = now();
        for (size_t i = 0; i < size; i += page) p[i] = 1;
        double first = now() - start;
        madvise((void *)p, size, MADV_DONTNEED);
        start = now();
        for (size_t i = 0; i < size; i += page) p[i] = 1;
        double again = now() - start;
        printf("per page: first touch %.2f us, after MADV_DONTNEED %.2f us\n", first / pages * 1e6, again / pages * 1e6);
        munmap((void *)p, size);
    }
    return 0;
}
