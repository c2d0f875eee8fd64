// A guest program that catches lost stores: it writes a round number into one word of each
// of PAGES pages, round after round without pause, and before each store checks that the
// word still holds the previous round. A live migration that misses a store shows as
// "LOST page P got G want W" on the serial console. No libc: built with
// `cc -Os -static -nostdlib`, so the binary is small enough to pass through an exec.
typedef unsigned long u64;

static long sys(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

#define PAGES 64
#define WORDS_PER_PAGE 512
static volatile u64 pages[PAGES * WORDS_PER_PAGE] __attribute__((aligned(4096)));
static char line[128];

static int put(char *at, const char *text, u64 v) {
  int n = 0;
  while (*text) at[n++] = *text++;
  char digits[24];
  int k = 0;
  do {
    digits[k++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (k) at[n++] = digits[--k];
  return n;
}

void _start(void) {
  long fd = sys(2 /* open */, (long)"/dev/ttyS0", 1 /* O_WRONLY */, 0);
  u64 lost = 0;
  for (u64 round = 1;; round++) {
    for (u64 p = 0; p < PAGES; p++) {
      u64 seen = pages[p * WORDS_PER_PAGE];
      if (seen != round - 1) {
        int n = put(line, "LOST page ", p);
        n += put(line + n, " got ", seen);
        n += put(line + n, " want ", round - 1);
        line[n++] = '\n';
        sys(1 /* write */, fd, (long)line, n);
        lost++;
      }
      pages[p * WORDS_PER_PAGE] = round;
    }
    if ((round & 0xfffff) == 0) {
      int n = put(line, "MEMCHECK round ", round);
      n += put(line + n, " lost ", lost);
      line[n++] = '\n';
      sys(1, fd, (long)line, n);
    }
  }
}
