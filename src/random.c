/* random.c -- bytes from the kernel, through getentropy (256 bytes a call at most). */
#define _DEFAULT_SOURCE
#include <sys/types.h>
#include <sys/random.h>
#include <unistd.h>

#include "core.h"

int tsim_random_bytes(unsigned char *out, size_t n) {
  while (n > 0) {
    size_t step = n < 256 ? n : 256;
    if (getentropy(out, step) != 0) return 0;
    out += step;
    n -= step;
  }
  return 1;
}
