#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <limits.h>
#include <assert.h>
#define tor_assert assert
#define STRUCT_VAR_P(st, off) ((void*) ( ((char*)(st)) + (off) ) )
typedef struct { void **list; int num_used; int capacity; } smartlist_t;
static void smartlist_add(smartlist_t *sl, void *e) { sl->list[sl->num_used++] = e; }
#include "heap_body.c" /* smartlist.c:636-798, extracted verbatim by the test */
typedef struct { int id; double key; int idx; } item_t;
static int cmp(const void *a, const void *b) {
  const item_t *x = a, *y = b;
  if (x->key < y->key) return -1; else if (x->key > y->key) return 1; return 0;
}
int main(void) {
  static void *store[4096]; smartlist_t sl = { store, 0, 4096 };
  static item_t items[4096]; int n = 0; char op[8];
  while (scanf("%7s", op) == 1) {
    if (op[0] == 'a') { double k; scanf("%lf", &k); items[n].id = n; items[n].key = k; items[n].idx = -1;
      smartlist_pqueue_add(&sl, cmp, offsetof(item_t, idx), &items[n]); n++; }
    else if (op[0] == 'p') { item_t *t = smartlist_pqueue_pop(&sl, cmp, offsetof(item_t, idx)); printf("P%d ", t->id); }
    else if (op[0] == 'r') { int i; scanf("%d", &i); smartlist_pqueue_remove(&sl, cmp, offsetof(item_t, idx), sl.list[i]); }
    else if (op[0] == 'k') { int i; double k; scanf("%d %lf", &i, &k); ((item_t*)sl.list[i])->key = k; }
    for (int i = 0; i < sl.num_used; i++) printf("%d ", ((item_t*)sl.list[i])->id);
    printf("|\n");
  }
  return 0;
}
