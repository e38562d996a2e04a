/* Driver for cell_ewma_get_current_tick_and_fraction (circuitmux_ewma.c:523-543, appended
 * verbatim by the test) over a mocked coarse clock counted in milliseconds. */
#include <stdio.h>
#include <stdint.h>
typedef struct { int64_t ms; } monotime_coarse_t;
static monotime_coarse_t g_now;
static void monotime_coarse_get(monotime_coarse_t *t) { *t = g_now; }
static int32_t monotime_coarse_diff_msec32(const monotime_coarse_t *a, const monotime_coarse_t *b) {
  return (int32_t)(b->ms - a->ms); }
static void monotime_coarse_add_msec(monotime_coarse_t *out, const monotime_coarse_t *in, uint32_t ms) {
  out->ms = in->ms + ms; }
#define BUG(x) (x)
#define STATIC static
static int ewma_ticks_initialized = 1;
static void cell_ewma_initialize_ticks(void) {}
static monotime_coarse_t start_of_current_tick;
static unsigned current_tick_num;
static int ewma_tick_len;
#include "clock_body.c"
int main(void) {
  long long start, now; unsigned tick;
  if (scanf("%lld %u %d", &start, &tick, &ewma_tick_len) != 3) return 1;
  start_of_current_tick.ms = start; current_tick_num = tick;
  while (scanf("%lld", &now) == 1) {
    double rem; g_now.ms = now;
    unsigned t = cell_ewma_get_current_tick_and_fraction(&rem);
    printf("%u %a\n", t, rem);
  }
  return 0;
}
