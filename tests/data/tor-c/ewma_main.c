/* Driver for circuitmux_ewma.c's arithmetic: the test prepends Tor's heap
 * (smartlist.c:636-798) and appends the EWMA functions and the body of
 * ewma_notify_xmit_cells (circuitmux_ewma.c:342-363), all verbatim. */
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <limits.h>
#include <assert.h>
#include <math.h>
#define tor_assert assert
#define STRUCT_VAR_P(st, off) ((void*) ( ((char*)(st)) + (off) ) )
typedef struct { void **list; int num_used; int capacity; } smartlist_t;
static void smartlist_add(smartlist_t *sl, void *e) { sl->list[sl->num_used++] = e; }
#define smartlist_len(sl) ((sl)->num_used)
#define SMARTLIST_FOREACH_BEGIN(sl, type, var) { int var ## _sl_idx; \
  for (var ## _sl_idx = 0; var ## _sl_idx < (sl)->num_used; ++var ## _sl_idx) { type var = (sl)->list[var ## _sl_idx];
#define SMARTLIST_FOREACH_END(var) } }
typedef struct cell_ewma_t { unsigned int last_adjusted_tick; double cell_count;
  unsigned int is_for_p_chan : 1; int heap_index; int id; } cell_ewma_t;
typedef struct { smartlist_t *active_circuit_pqueue;
  unsigned int active_circuit_pqueue_last_recalibrated; } ewma_policy_data_t;
typedef struct { cell_ewma_t cell_ewma; } ewma_policy_circ_data_t;
static double ewma_scale_factor = 0.1;
static unsigned g_tick; static double g_frac;
#define cell_ewma_get_current_tick_and_fraction(p) (*(p) = g_frac, g_tick)
#include "heap_body.c"
#include "ewma_body.c"
static void xmit(ewma_policy_data_t *pol, ewma_policy_circ_data_t *cdata, unsigned n_cells) {
  unsigned int tick; double fractional_tick, ewma_increment; cell_ewma_t *cell_ewma, *tmp;
#include "xmit_body.c"
}
int main(void) {
  static void *store[1024]; smartlist_t sl = { store, 0, 1024 };
  static ewma_policy_circ_data_t circs[1024]; int n = 0; char op[8]; unsigned recal; int ticklen;
  ewma_policy_data_t pol; pol.active_circuit_pqueue = &sl;
  if (scanf("%la %u %d", &ewma_scale_factor, &recal, &ticklen) != 3) return 1;
  pol.active_circuit_pqueue_last_recalibrated = recal;
  while (scanf("%7s", op) == 1) {
    if (op[0] == 'a') { double c; unsigned t; scanf("%la %u", &c, &t);
      circs[n].cell_ewma.cell_count = c; circs[n].cell_ewma.last_adjusted_tick = t;
      circs[n].cell_ewma.heap_index = -1; circs[n].cell_ewma.id = n; add_cell_ewma(&pol, &circs[n].cell_ewma); n++; }
    else if (op[0] == 'x') { int msec; scanf("%u %d", &g_tick, &msec);
      g_frac = ((double)msec) / (1.0e3 * ticklen);
      cell_ewma_t *head = sl.list[0];
      xmit(&pol, (ewma_policy_circ_data_t *)head, 1); }
    else if (op[0] == 'r') { int i; scanf("%d", &i); remove_cell_ewma(&pol, sl.list[i]); }
    printf("%u", pol.active_circuit_pqueue_last_recalibrated);
    for (int i = 0; i < sl.num_used; i++) { cell_ewma_t *e = sl.list[i];
      printf(" %d:%a:%u", e->id, e->cell_count, e->last_adjusted_tick); }
    printf("\n");
  }
  return 0;
}
