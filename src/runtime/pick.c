/*
 * Measured thread counts (runtime.h, fr_pick_begin): a recurrent call of a
 * small shape runs on one thread or on the full count, whichever its
 * shape's recent calls took less time with. Adaptive threads' stalls
 * (settings.c) see a partner that lost its core to the OS; they cannot see
 * two vCPUs that share one core of the host (SMT siblings: no time is
 * lost, each runs at half speed), where a small layer's two threads, which
 * meet every step, are slower than one. Only times show that. The values
 * and why: docs/tuning.md. Never changes a result's bits (the thread count
 * never does).
 */
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "runtime/runtime.h"

#define FR_PICK_SLOTS 256       /* shapes remembered, two slots a hash: a new one takes
                                   the pair's least recently used */
#define FR_PICK_SAMPLES 5       /* times kept per count; the middle one decides */
#define FR_PICK_GAIN 0.9        /* one thread takes over below this share of the full
                                   count's time */
#define FR_PICK_MAX_STEP 1048576.0 /* multiply-adds a layer's step: past it, not measured */
#define FR_PICK_MAX_WORK 1e9    /* multiply-adds a call: past it, not measured */
#define FR_PICK_PROBE_FULL 8    /* on one thread, every 8th call tries the full count */
#define FR_PICK_PROBE_ONE 256   /* on the full count, every 256th call tries one thread */

typedef struct {
    uint64_t key;                      /* 0: empty */
    int64_t t[2][FR_PICK_SAMPLES];     /* ns per step: [0] one thread, [1] the full count */
    uint32_t seen[2];                  /* samples taken; the ring's next is seen % SAMPLES */
    uint32_t calls;                    /* calls since both counts had their samples */
    int one;                           /* the last verdict: one thread is faster */
    uint64_t used;                     /* the table's clock at its last call */
} pick_slot;

static pick_slot slots[FR_PICK_SLOTS];
static uint64_t clock_now = 0;           /* calls taken, under the lock */
static atomic_flag lock = ATOMIC_FLAG_INIT;
static _Atomic int64_t picked_one = 0;   /* calls run on one thread by the verdict */
static _Atomic int64_t plant[2] = {0, 0}; /* the tests' times per step, in place of the clock's */

/* The table's lock: held for a few dozen instructions; a caller that finds
 * it taken gives its CPU up (the holder may have lost its core) */
static void take(void)
{
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) sched_yield();
}

static void give(void)
{
    atomic_flag_clear_explicit(&lock, memory_order_release);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

/* Every bit of the key into the low ones (splitmix64's finalizer): mix
 * alone leaves the low bits blind to its last value (the kind), and a
 * layer's forward and backward then took the same slot in turn. */
static uint64_t spread(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* The middle of the FR_PICK_SAMPLES times kept. */
static int64_t middle(const int64_t *t)
{
    int64_t v[FR_PICK_SAMPLES];
    for (int i = 0; i < FR_PICK_SAMPLES; i++) {   /* insertion sort */
        int j = i;
        for (; j > 0 && v[j - 1] > t[i]; j--) v[j] = v[j - 1];
        v[j] = t[i];
    }
    return v[FR_PICK_SAMPLES / 2];
}

int fr_pick_begin(fr_pick *p, const fr_desc *d, int kind)
{
    p->slot = -1;
    const int n = d->num_threads;
    if (n < 2 || d->T < 2 || !fr_adaptive_threads()) return n;
    /* a step of the widest layer; its meeting costs little past the bound */
    const double in = d->L > 1 && (double)d->D * d->H > d->I_ ? (double)d->D * d->H : d->I_;
    const double step = (double)d->B * fr_num_gates(d->cell) * d->H * (in + d->H);
    if (step > FR_PICK_MAX_STEP || step * d->T * d->L * d->D > FR_PICK_MAX_WORK) return n;
    /* T is out of the key (times are per step): a model fed sequences of
     * many lengths keeps one slot */
    uint64_t key = 0;
    key = mix(key, (uint64_t)d->cell);
    key = mix(key, (uint64_t)d->B);
    key = mix(key, (uint64_t)d->I_);
    key = mix(key, (uint64_t)d->H);
    key = mix(key, (uint64_t)(d->L * 2 + d->D));
    key = mix(key, (uint64_t)(d->lengths != NULL) | (uint64_t)d->gru_lbr << 1
                       | (uint64_t)(d->clip > 0) << 2 | (uint64_t)d->batch_invariant << 3);
    key = spread(mix(key, (uint64_t)kind << 8 | (uint64_t)n));
    if (key == 0) key = 1;
    const int pair = (int)(key % (FR_PICK_SLOTS / 2)) * 2;
    int use_one;
    take();
    int s = slots[pair].key == key ? pair : pair + 1;
    if (slots[s].key != key) {   /* new here: the pair's least recently used */
        s = slots[pair].used <= slots[pair + 1].used ? pair : pair + 1;
        slots[s] = (pick_slot){0};
        slots[s].key = key;
    }
    pick_slot *e = &slots[s];
    e->used = ++clock_now;
    if (e->seen[0] < FR_PICK_SAMPLES || e->seen[1] < FR_PICK_SAMPLES) {
        use_one = e->seen[0] < e->seen[1];   /* the full count first, then in turn */
    } else {
        const uint32_t c = e->calls++;
        use_one = e->one ? c % FR_PICK_PROBE_FULL != FR_PICK_PROBE_FULL - 1
                         : c % FR_PICK_PROBE_ONE == FR_PICK_PROBE_ONE - 1;
    }
    if (use_one && e->one) atomic_fetch_add_explicit(&picked_one, 1, memory_order_relaxed);
    give();
    p->slot = s;
    p->key = key;
    p->one = use_one;
    p->T = d->T;
    p->start = fr_now_ns();
    return use_one ? 1 : n;
}

void fr_pick_end(const fr_pick *p)
{
    if (p->slot < 0) return;
    const int c = p->one ? 0 : 1;
    int64_t t = atomic_load_explicit(&plant[c], memory_order_relaxed);
    if (t == 0) t = (fr_now_ns() - p->start) / p->T;
    if (t < 1) t = 1;
    take();
    pick_slot *e = &slots[p->slot];
    if (e->key == p->key) {   /* else another shape took the slot meanwhile */
        e->t[c][e->seen[c] % FR_PICK_SAMPLES] = t;
        e->seen[c]++;
        if (e->seen[0] >= FR_PICK_SAMPLES && e->seen[1] >= FR_PICK_SAMPLES) {
            /* to one thread when it is clearly faster, back when it is not:
             * a machine's hiccups on the full count seldom send it there */
            const double one = (double)middle(e->t[0]), full = (double)middle(e->t[1]);
            e->one = e->one ? one < full : one < FR_PICK_GAIN * full;
        }
    }
    give();
}

int64_t fr_picked_one(void)
{
    return atomic_load_explicit(&picked_one, memory_order_relaxed);
}

void fr_pick_forget(void)
{
    take();
    for (int s = 0; s < FR_PICK_SLOTS; s++) slots[s] = (pick_slot){0};
    clock_now = 0;
    give();
}

void fr_pick_plant(int64_t one_ns, int64_t full_ns)
{
    atomic_store_explicit(&plant[0], one_ns > 0 ? one_ns : 0, memory_order_relaxed);
    atomic_store_explicit(&plant[1], full_ns > 0 ? full_ns : 0, memory_order_relaxed);
}
