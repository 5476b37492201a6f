/*
 * test_cache_pgen.c - the purge generation state machine
 * (src/cache_pgen.c): when an instance must drop its L1 after it was not
 * listening on the purge channel, and when it must not.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "weir/cache_pgen.h"

/* Subscribed at start with an empty L1, read G: kept, G known. */
static void start_empty_keeps(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    assert_int_equal(weir_pgen_current(&g), -1);
    e = weir_pgen_subscribed(&g, 0);
    assert_int_equal(g.phase, WEIR_PGEN_SYNCING);
    assert_int_equal(weir_pgen_current(&g), -1);
    assert_int_equal(weir_pgen_read(&g, e, 7), WEIR_PGEN_KEEP);
    assert_int_equal(weir_pgen_current(&g), 7);
    assert_int_equal(g.phase, WEIR_PGEN_TRACKING);
}

/* The draft's bug: an instance that has never read the generation, but
 * listened since before its L1 filled, must not drop at its first read,
 * however late that read comes (failed reads retried meanwhile). */
static void late_first_read_while_subscribed_keeps(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    /* L1 fills now; purges arrive on the channel and are applied */
    weir_pgen_message(&g, 3);
    weir_pgen_message(&g, 4);
    assert_int_equal(weir_pgen_read(&g, e, 4), WEIR_PGEN_KEEP);
    assert_int_equal(weir_pgen_current(&g), 4);
}

/* Started while Redis was unreachable: L1 filled before the first
 * subscription, what was published meanwhile is unknown. */
static void start_filled_drops(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 0), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_current(&g), 0);
}

/* Issue 8 defect 1: cut off before the first read completed. */
static void cut_before_first_read_drops(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    weir_pgen_lost(&g);
    assert_int_equal(g.check, WEIR_PGEN_CHECK_UNKNOWN);
    /* the old read comes back late: ignored, it says nothing of the gap */
    assert_int_equal(weir_pgen_read(&g, e, 5), WEIR_PGEN_IGNORE);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 6), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_current(&g), 6);
    /* and from there on it is tracked normally */
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 6), WEIR_PGEN_KEEP);
}

/* Cut twice before any read succeeded: still unknown. */
static void cut_twice_unknown_drops(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    weir_pgen_subscribed(&g, 0);
    weir_pgen_lost(&g);
    weir_pgen_subscribed(&g, 1);
    weir_pgen_message(&g, 9); /* a message says nothing of what came before it */
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 9), WEIR_PGEN_DROP);
}

/* Known at K, cut, nothing published: kept. */
static void cut_known_unchanged_keeps(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    assert_int_equal(weir_pgen_read(&g, e, 2), WEIR_PGEN_KEEP);
    weir_pgen_message(&g, 3); /* received: known follows */
    assert_int_equal(weir_pgen_current(&g), 3);
    weir_pgen_lost(&g);
    assert_int_equal(weir_pgen_current(&g), 3);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 3), WEIR_PGEN_KEEP);
}

/* Known at K, cut, a purge published meanwhile: dropped. */
static void cut_known_moved_drops(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    weir_pgen_read(&g, e, 2);
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 3), WEIR_PGEN_DROP);
}

/* Known at K, cut, purge K+1 published after the new subscription (it
 * arrives on the channel before the read's reply): nothing was missed. */
static void cut_known_moved_but_received_keeps(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    weir_pgen_read(&g, e, 2);
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 1);
    weir_pgen_message(&g, 3);
    weir_pgen_message(&g, 4);
    assert_int_equal(weir_pgen_read(&g, e, 3), WEIR_PGEN_KEEP);
    assert_int_equal(weir_pgen_current(&g), 4); /* the message is newer than the read */
}

/* ... but when the first message of the new subscription is K+2, K+1 was
 * published in the gap. */
static void cut_known_gap_before_first_message_drops(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    weir_pgen_read(&g, e, 2);
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 1);
    weir_pgen_message(&g, 4);
    assert_int_equal(weir_pgen_read(&g, e, 4), WEIR_PGEN_DROP);
}

/* Cut again while the read of the next subscription was out: the known
 * generation of before still decides, advanced by what that short
 * subscription received without a gap. */
static void cut_during_resync_keeps_known(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    weir_pgen_read(&g, e, 2);
    weir_pgen_lost(&g);
    weir_pgen_subscribed(&g, 1);
    weir_pgen_message(&g, 3);
    weir_pgen_lost(&g);
    assert_int_equal(g.check, WEIR_PGEN_CHECK_KNOWN);
    assert_int_equal(weir_pgen_current(&g), 3);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 3), WEIR_PGEN_KEEP);
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 4), WEIR_PGEN_DROP);
}

/* The counter went back (Redis lost its data): what it counted is unknown. */
static void counter_reset_drops(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    e = weir_pgen_subscribed(&g, 0);
    weir_pgen_read(&g, e, 5);
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 1);
    assert_int_equal(weir_pgen_read(&g, e, 0), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_current(&g), 0);
}

/* A read for an older subscription, a second read, a read while not
 * subscribed, a negative value: ignored. */
static void stray_reads_ignored(void **state)
{
    struct weir_pgen g;
    unsigned e1, e2;

    weir_pgen_init(&g);
    assert_int_equal(weir_pgen_read(&g, 0, 1), WEIR_PGEN_IGNORE);
    e1 = weir_pgen_subscribed(&g, 0);
    e2 = weir_pgen_subscribed(&g, 0); /* a new subscription without news of the old one's end */
    assert_int_not_equal(e1, e2);
    assert_int_equal(g.check, WEIR_PGEN_CHECK_UNKNOWN);
    assert_int_equal(weir_pgen_read(&g, e1, 1), WEIR_PGEN_IGNORE);
    assert_int_equal(weir_pgen_read(&g, e2, -1), WEIR_PGEN_IGNORE);
    assert_int_equal(weir_pgen_read(&g, e2, 1), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_read(&g, e2, 1), WEIR_PGEN_IGNORE);
}

/* Old-format messages (no generation) do not advance what is known: a
 * later comparison drops rather than trusting them. */
static void message_without_generation(void **state)
{
    struct weir_pgen g;
    unsigned e;

    weir_pgen_init(&g);
    weir_pgen_message(&g, 4); /* not subscribed: nothing */
    assert_int_equal(g.last_msg, -1);
    e = weir_pgen_subscribed(&g, 0);
    weir_pgen_read(&g, e, 2);
    weir_pgen_message(&g, -1);
    assert_int_equal(weir_pgen_current(&g), 2);
    weir_pgen_lost(&g);
    e = weir_pgen_subscribed(&g, 0);
    assert_int_equal(weir_pgen_read(&g, e, 3), WEIR_PGEN_DROP);
}

static void decide_table(void **state)
{
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_NONE, -1, 10, -1), WEIR_PGEN_KEEP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_FILLED, -1, 0, -1), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_UNKNOWN, -1, 0, -1), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_KNOWN, 5, 5, -1), WEIR_PGEN_KEEP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_KNOWN, 5, 6, -1), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_KNOWN, 5, 6, 6), WEIR_PGEN_KEEP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_KNOWN, 5, 6, 5), WEIR_PGEN_KEEP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_KNOWN, 5, 8, 7), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_KNOWN, 5, 4, 5), WEIR_PGEN_DROP);
    assert_int_equal(weir_pgen_decide(WEIR_PGEN_CHECK_KNOWN, -1, 4, -1), WEIR_PGEN_DROP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(start_empty_keeps),
        cmocka_unit_test(late_first_read_while_subscribed_keeps),
        cmocka_unit_test(start_filled_drops),
        cmocka_unit_test(cut_before_first_read_drops),
        cmocka_unit_test(cut_twice_unknown_drops),
        cmocka_unit_test(cut_known_unchanged_keeps),
        cmocka_unit_test(cut_known_moved_drops),
        cmocka_unit_test(cut_known_moved_but_received_keeps),
        cmocka_unit_test(cut_known_gap_before_first_message_drops),
        cmocka_unit_test(cut_during_resync_keeps_known),
        cmocka_unit_test(counter_reset_drops),
        cmocka_unit_test(stray_reads_ignored),
        cmocka_unit_test(message_without_generation),
        cmocka_unit_test(decide_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
