#ifndef CJUMPGATE_HEAP_H
#define CJUMPGATE_HEAP_H

#include <stddef.h>

/// Bytes the C allocator holds free (glibc's mallinfo2 fordblks over all arenas; mallinfo before glibc
/// 2.33). A trim gives their pages back but leaves them free, so the figure does not drop after a trim.
/// 0 where it cannot be known (another libc, a sanitizer's allocator).
size_t jumpgate_heap_free_bytes(void);

/// Gives free heap pages back to the system (glibc's malloc_trim(0)); 1 if any went back, 0 otherwise.
int jumpgate_heap_trim(void);

#endif
