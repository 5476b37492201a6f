/*
 * cache_pgen.c - the purge generation state machine (pure). The reasoning
 * is in include/weir/cache_pgen.h.
 */
#include "config.h"

#include "weir/cache_pgen.h"

void weir_pgen_init(struct weir_pgen *g)
{
    g->phase = WEIR_PGEN_IDLE;
    g->check = WEIR_PGEN_CHECK_NONE;
    g->epoch = 0;
    g->known = -1;
    g->first_msg = g->last_msg = -1;
}

/* Messages K+1.. received on this subscription: the generation they
 * bring is covered as well as K was. */
static void advance_by_messages(struct weir_pgen *g)
{
    if (g->known >= 0 && g->first_msg >= 0 && g->first_msg <= g->known + 1 && g->last_msg > g->known)
        g->known = g->last_msg;
}

void weir_pgen_lost(struct weir_pgen *g)
{
    switch (g->phase) {
    case WEIR_PGEN_TRACKING:
        g->check = WEIR_PGEN_CHECK_KNOWN;
        break;
    case WEIR_PGEN_SYNCING:
        if (g->check == WEIR_PGEN_CHECK_KNOWN)
            advance_by_messages(g);
        else
            g->check = WEIR_PGEN_CHECK_UNKNOWN; /* what was stored may miss what comes now */
        break;
    default:
        return; /* was not listening */
    }
    g->phase = WEIR_PGEN_CUT;
    g->first_msg = g->last_msg = -1;
}

unsigned weir_pgen_subscribed(struct weir_pgen *g, int l1_filled)
{
    if (g->phase == WEIR_PGEN_SYNCING || g->phase == WEIR_PGEN_TRACKING)
        weir_pgen_lost(g); /* a new subscription without news of the old one's end */
    if (g->phase == WEIR_PGEN_IDLE)
        g->check = l1_filled ? WEIR_PGEN_CHECK_FILLED : WEIR_PGEN_CHECK_NONE;
    g->phase = WEIR_PGEN_SYNCING;
    g->first_msg = g->last_msg = -1;
    return ++g->epoch;
}

void weir_pgen_message(struct weir_pgen *g, long long gen)
{
    if (gen < 0 || (g->phase != WEIR_PGEN_SYNCING && g->phase != WEIR_PGEN_TRACKING))
        return;
    if (g->first_msg < 0 || gen < g->first_msg)
        g->first_msg = gen;
    if (gen > g->last_msg)
        g->last_msg = gen;
    if (g->phase == WEIR_PGEN_TRACKING && gen > g->known)
        g->known = gen; /* in order, without gaps, while subscribed */
}

int weir_pgen_decide(int check, long long known, long long value, long long first_msg)
{
    switch (check) {
    case WEIR_PGEN_CHECK_NONE:
        return WEIR_PGEN_KEEP;
    case WEIR_PGEN_CHECK_KNOWN:
        if (known < 0 || value < known)
            return WEIR_PGEN_DROP; /* the counter went back: Redis lost it, and what it counted */
        if (value == known)
            return WEIR_PGEN_KEEP;
        /* purges known+1..value happened; this subscription received them
         * all only when its first message was known+1 or earlier */
        return first_msg >= 0 && first_msg <= known + 1 ? WEIR_PGEN_KEEP : WEIR_PGEN_DROP;
    default: /* FILLED, UNKNOWN */
        return WEIR_PGEN_DROP;
    }
}

int weir_pgen_read(struct weir_pgen *g, unsigned epoch, long long value)
{
    int v;

    if (g->phase != WEIR_PGEN_SYNCING || epoch != g->epoch || value < 0)
        return WEIR_PGEN_IGNORE;
    v = weir_pgen_decide(g->check, g->known, value, g->first_msg);
    g->known = value > g->last_msg ? value : g->last_msg;
    g->phase = WEIR_PGEN_TRACKING;
    g->check = WEIR_PGEN_CHECK_NONE;
    return v;
}

long long weir_pgen_current(const struct weir_pgen *g)
{
    if (g->phase == WEIR_PGEN_TRACKING || g->check == WEIR_PGEN_CHECK_KNOWN)
        return g->known;
    return -1;
}
