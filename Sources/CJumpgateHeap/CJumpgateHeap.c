#include "CJumpgateHeap.h"

// Any libc header brings glibc's features.h, which defines __GLIBC__ (stddef.h is the compiler's own).
#include <stdlib.h>

#if defined(__GLIBC__)
#include <malloc.h>

size_t jumpgate_heap_free_bytes(void) {
#if __GLIBC_PREREQ(2, 33)
    struct mallinfo2 info = mallinfo2();
    return info.fordblks;
#else
    // Older glibc: mallinfo's int fields, exact below 2 GiB free (what matters for the trimmer's threshold).
    struct mallinfo info = mallinfo();
    return (size_t)(unsigned int)info.fordblks;
#endif
}

int jumpgate_heap_trim(void) { return malloc_trim(0); }

#else

size_t jumpgate_heap_free_bytes(void) { return 0; }

int jumpgate_heap_trim(void) { return 0; }

#endif
