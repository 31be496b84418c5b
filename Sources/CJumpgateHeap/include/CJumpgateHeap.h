#ifndef CJUMPGATE_HEAP_H
#define CJUMPGATE_HEAP_H

#include <stddef.h>

/// Bytes the C allocator holds free, which a trim could give back (glibc's mallinfo2 fordblks, over all
/// arenas); 0 where that cannot be known (another libc, a sanitizer's allocator, glibc before 2.33).
size_t jumpgate_heap_free_bytes(void);

/// Gives free heap pages back to the system (glibc's malloc_trim(0)); 1 if any went back, 0 otherwise.
int jumpgate_heap_trim(void);

#endif
