/* tls_stats.c - TLS counters as /stats JSON and /metrics text (see tls_stats.h). */
#include "config.h"

#include <stdatomic.h>

#include "weir/prom.h"
#include "weir/tls_stats.h"

static unsigned long long ld(const _Atomic unsigned long long *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static int oset(json_t *o, const char *k, json_t *v)
{
    return v == NULL || json_object_set_new(o, k, v) != 0 ? -1 : 0;
}

static json_t *listener_json(const struct weir_tls_stats_listener *l)
{
    json_t *o = json_object(), *hs = json_object(), *fail = json_object();
    int bad = o == NULL || hs == NULL || fail == NULL;

    if (!bad) {
        bad |= oset(hs, "full", json_integer((json_int_t)ld(&l->counters->full)));
        bad |= oset(hs, "resumed", json_integer((json_int_t)ld(&l->counters->resumed)));
        for (int r = 0; r < WEIR_TLS_FAIL_N; r++)
            bad |= oset(fail, weir_tls_fail_name(r), json_integer((json_int_t)ld(&l->counters->fail[r])));
        bad |= oset(o, "address", json_string(l->address));
        bad |= oset(o, "handshakes", hs);
        hs = NULL;
        bad |= oset(o, "failures", fail);
        fail = NULL;
    }
    json_decref(hs);
    json_decref(fail);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *weir_tls_stats_json(const struct weir_tls_stats_listener *l, size_t n, time_t not_after, time_t now)
{
    json_t *o = json_object(), *arr = json_array();
    long long left = (long long)not_after - (long long)now;
    int bad = o == NULL || arr == NULL;

    for (size_t i = 0; !bad && i < n; i++) {
        json_t *x = listener_json(&l[i]);
        bad = x == NULL || json_array_append_new(arr, x) != 0;
    }
    if (!bad) {
        bad |= oset(o, "listeners", arr);
        arr = NULL;
        /* Days rounded down towards minus infinity: -0.5 days reads -1. */
        bad |= oset(o, "cert_expiry_seconds", not_after ? json_integer(left) : json_null());
        bad |= oset(o, "cert_expiry_days",
                    not_after ? json_integer(left >= 0 ? left / 86400 : -((-left + 86399) / 86400))
                              : json_null());
    }
    json_decref(arr);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Rendered into a scratch buffer first so a failure appends nothing. */
int weir_tls_metrics(struct evbuffer *dst, const struct weir_tls_stats_listener *l, size_t n,
                     time_t not_after, time_t now)
{
    struct evbuffer *out = evbuffer_new();
    int rc = 0;

    if (out == NULL)
        return -1;

    if (n > 0) {
        rc |=
            evbuffer_add_printf(out, "# HELP weir_tls_handshakes_total Completed TLS handshakes by listener, "
                                     "full or resumed (ticket or session cache)\n"
                                     "# TYPE weir_tls_handshakes_total counter\n") < 0;
        for (size_t i = 0; i < n; i++) {
            static const char *const kinds[] = {"full", "resumed"};
            for (int k = 0; k < 2; k++) {
                evbuffer_add_printf(out, "weir_tls_handshakes_total{listen=\"");
                weir_prom_label(out, l[i].address);
                rc |=
                    evbuffer_add_printf(out, "\",kind=\"%s\"} %llu\n", kinds[k],
                                        k == 0 ? ld(&l[i].counters->full) : ld(&l[i].counters->resumed)) < 0;
            }
        }
        rc |= evbuffer_add_printf(
                  out, "# HELP weir_tls_handshake_failures_total Failed TLS handshakes by listener "
                       "and reason\n"
                       "# TYPE weir_tls_handshake_failures_total counter\n") < 0;
        for (size_t i = 0; i < n; i++) {
            for (int r = 0; r < WEIR_TLS_FAIL_N; r++) {
                evbuffer_add_printf(out, "weir_tls_handshake_failures_total{listen=\"");
                weir_prom_label(out, l[i].address);
                rc |= evbuffer_add_printf(out, "\",reason=\"%s\"} %llu\n", weir_tls_fail_name(r),
                                          ld(&l[i].counters->fail[r])) < 0;
            }
        }
    }
    if (not_after != 0)
        rc |=
            evbuffer_add_printf(out,
                                "# HELP weir_tls_cert_expiry_seconds Seconds until the earliest certificate "
                                "(served or client) expires; negative once expired\n"
                                "# TYPE weir_tls_cert_expiry_seconds gauge\n"
                                "weir_tls_cert_expiry_seconds %lld\n",
                                (long long)not_after - (long long)now) < 0;
    if (rc == 0 && evbuffer_add_buffer(dst, out) != 0)
        rc = -1;
    evbuffer_free(out);
    return rc != 0 ? -1 : 0;
}
