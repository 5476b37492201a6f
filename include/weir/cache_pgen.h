/*
 * cache_pgen.h - the purge generation, as one instance tracks it: a pure
 * state machine (no I/O, no clock) that says when the L1 must be dropped
 * because purges may have been published while the instance was not
 * listening on the purge channel.
 *
 * The generation is a counter in Redis; every purge increments it and
 * publishes its message in one atomic step (a script), the message
 * carrying the new value. So, while subscribed, messages arrive in
 * generation order without gaps, and a read of the counter made while
 * subscribed (after the SUBSCRIBE was confirmed) covers every purge the
 * subscription did not see.
 *
 * What must hold: no L1 object survives a purge published after it was
 * stored that the instance did not receive. Cases, at the first
 * successful read G of a subscription:
 *  - first subscription, L1 empty when it began: nothing stored can have
 *    missed anything: keep (and know G);
 *  - first subscription, L1 filled before it (started while Redis was
 *    unreachable): what was published meanwhile is unknown: drop;
 *  - a subscription was lost before any read succeeded on it (the
 *    generation was never known): drop;
 *  - a subscription was lost while the generation was known (K): drop
 *    when G moved past K, unless this subscription has itself received
 *    generation K+1 (then nothing was missed); G below K (the counter was
 *    lost with Redis's data) drops too.
 * A read that completes after its subscription was lost says nothing
 * about the gap that follows: it is ignored (the next subscription reads
 * again).
 */
#ifndef WEIR_CACHE_PGEN_H
#define WEIR_CACHE_PGEN_H

enum weir_pgen_phase {
    WEIR_PGEN_IDLE,     /* never subscribed */
    WEIR_PGEN_SYNCING,  /* subscribed, the generation read has not succeeded yet */
    WEIR_PGEN_TRACKING, /* subscribed and the generation known */
    WEIR_PGEN_CUT,      /* a subscription was lost; not subscribed now */
};

/* What the next successful read must check. */
enum weir_pgen_check {
    WEIR_PGEN_CHECK_NONE,    /* nothing: L1 was empty when listening began */
    WEIR_PGEN_CHECK_FILLED,  /* L1 was filled before the first subscription */
    WEIR_PGEN_CHECK_UNKNOWN, /* cut off while the generation was unknown */
    WEIR_PGEN_CHECK_KNOWN,   /* cut off at generation `known` */
};

enum weir_pgen_verdict {
    WEIR_PGEN_IGNORE, /* a read from a subscription that is gone, or not expected */
    WEIR_PGEN_KEEP,   /* the generation is known now; L1 kept */
    WEIR_PGEN_DROP,   /* the generation is known now; drop the whole L1 */
};

struct weir_pgen {
    int phase, check;
    unsigned epoch;      /* subscriptions so far */
    long long known;     /* the generation while TRACKING, at the cut when check is KNOWN; else -1 */
    long long first_msg; /* the lowest generation received on this subscription, -1 none */
    long long last_msg;  /* the highest, -1 none */
};

void weir_pgen_init(struct weir_pgen *g);
/* A subscription was confirmed; l1_filled: the L1 holds objects now.
 * Returns the new epoch, to pass with the read made for it. */
unsigned weir_pgen_subscribed(struct weir_pgen *g, int l1_filled);
/* The subscription was lost. */
void weir_pgen_lost(struct weir_pgen *g);
/* A purge message arrived carrying generation gen (-1: an old-format
 * message without it). */
void weir_pgen_message(struct weir_pgen *g, long long gen);
/* A read of the counter made for subscription `epoch` returned value (0
 * when the key does not exist). */
int weir_pgen_read(struct weir_pgen *g, unsigned epoch, long long value);
/* The generation a read-back should report: known, or -1. */
long long weir_pgen_current(const struct weir_pgen *g);
/* The verdict alone, from the check to make (pure). */
int weir_pgen_decide(int check, long long known, long long value, long long first_msg);

#endif
