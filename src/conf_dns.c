/*
 * conf_dns.c - loading the configuration of DNS discovery: servers with
 * `resolve = true` (their name is resolved by dns.c, asynchronously, never
 * at load time) and the top-level `resolvers` list.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "conf_dns.h"
#include "weir/conf_dns.h"

void conf_key_server_addr(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj)
{
    struct weir_conf_addr *a = (struct weir_conf_addr *)(void *)((char *)obj + k->off);

    conf_set_str(L, &a->text, config_setting_get_string(s));
    a->line = conf_line(s);
}

/* "name:port" of a resolved server. 0 or -1 with *why. */
static int parse_name_port(const char *text, char *name, size_t cap, int *port, const char **why)
{
    const char *colon = strrchr(text, ':');
    long p = 0;

    if (colon == NULL || colon[1] == '\0') {
        *why = "missing port (expected name:port)";
        return -1;
    }
    if ((size_t)(colon - text) >= cap || colon == text) {
        *why = colon == text ? "missing host name" : "host name too long";
        return -1;
    }
    memcpy(name, text, (size_t)(colon - text));
    name[colon - text] = '\0';
    if (!conf_is_hostname(name)) {
        *why = "not a host name (letters, digits, '-', '_' and dots)";
        return -1;
    }
    for (const char *q = colon + 1; *q; q++) {
        if (*q < '0' || *q > '9' || p > 65535) {
            *why = "port is not a number between 1 and 65535";
            return -1;
        }
        p = p * 10 + (*q - '0');
    }
    if (p < 1 || p > 65535) {
        *why = "port must be between 1 and 65535";
        return -1;
    }
    conf_lower(name);
    *port = (int)p;
    return 0;
}

void conf_dns_split(struct loader *L, const config_setting_t *list, const char *path,
                    struct weir_conf_pool *p)
{
    size_t keep = 0, n = p->nservers;

    for (size_t i = 0; i < n; i++) {
        struct weir_conf_server *sv = &p->servers[i];
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const config_setting_t *as = e ? config_setting_get_member(e, "address") : NULL;
        const char *why = "invalid";

        if (sv->addr.text == NULL) { /* missing or bad address: reported already */
            p->servers[keep++] = *sv;
            continue;
        }
        if (!sv->resolve) {
            if (weir_conf_parse_addr(sv->addr.text, &sv->addr.ss, &sv->addr.len, &why) < 0)
                conf_err_at(L, as ? as : list, "invalid address '%s' in %s[%zu].address: %s", sv->addr.text,
                            path, i, why);
            else if (strncmp(sv->addr.text, "*:", 2) == 0)
                conf_err_at(L, as ? as : list,
                            "invalid address '%s' in %s[%zu].address: a server needs a host", sv->addr.text,
                            path, i);
            p->servers[keep++] = *sv;
            continue;
        }
        char name[256];
        int port = 0;
        if (parse_name_port(sv->addr.text, name, sizeof(name), &port, &why) < 0) {
            conf_err_at(L, as ? as : list, "invalid address '%s' in %s[%zu].address (resolve = true): %s",
                        sv->addr.text, path, i, why);
            free(sv->addr.text);
            continue;
        }
        struct weir_conf_dns *v = realloc(p->dns, (p->ndns + 1) * sizeof(*v));
        if (v == NULL) {
            L->oom = 1;
            free(sv->addr.text);
            continue;
        }
        p->dns = v;
        struct weir_conf_dns *d = &p->dns[p->ndns];
        memset(d, 0, sizeof(*d));
        d->text = sv->addr.text; /* ownership moves */
        d->name = conf_strdup(L, name);
        d->port = port;
        d->weight = sv->weight;
        d->interval_ms = sv->resolve_interval_ms;
        d->line = sv->line;
        for (size_t j = 0; j < p->ndns; j++)
            if (strcmp(p->dns[j].name, d->name) == 0 && p->dns[j].port == port)
                conf_err_at(L, as ? as : list,
                            "duplicate resolved server '%s' in %s[%zu].address (also at line %d)",
                            sv->addr.text, path, i, p->dns[j].line);
        p->ndns++;
    }
    p->nservers = keep;
}

void conf_key_resolvers(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf *c = obj;
    int n = config_setting_length(s);

    if (n <= 0) {
        conf_err_at(L, s, "%s is empty: give at least one \"IP[:port]\" or leave it out for /etc/resolv.conf",
                    path);
        return;
    }
    c->resolvers = calloc((size_t)n, sizeof(*c->resolvers));
    if (c->resolvers == NULL) {
        L->oom = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        char buf[300];
        const char *why = "invalid";

        if (v == NULL) {
            conf_err_at(L, e, "%s[%d] must be a string \"IP[:port]\"", path, i);
            continue;
        }
        /* port 53 unless given */
        if (v[0] == '[' ? strstr(v, "]:") == NULL : strchr(v, ':') == NULL)
            snprintf(buf, sizeof(buf), "%s:53", v);
        else if (v[0] != '[' && strchr(v, ':') != strrchr(v, ':'))
            snprintf(buf, sizeof(buf), "[%s]:53", v); /* bare IPv6 */
        else
            snprintf(buf, sizeof(buf), "%s", v);
        struct weir_conf_addr *a = &c->resolvers[c->nresolvers];
        if (weir_conf_parse_addr(buf, &a->ss, &a->len, &why) < 0 || strncmp(buf, "*:", 2) == 0) {
            conf_err_at(L, e, "invalid address '%s' in %s[%d]: %s", v, path, i,
                        strncmp(buf, "*:", 2) == 0 ? "an IP address is required" : why);
            continue;
        }
        a->text = conf_strdup(L, buf);
        a->line = conf_line(e);
        c->nresolvers++;
    }
}

void weir_conf_dns_free(struct weir_conf_pool *p)
{
    for (size_t i = 0; i < p->ndns; i++) {
        free(p->dns[i].text);
        free(p->dns[i].name);
    }
    free(p->dns);
    p->dns = NULL;
    p->ndns = 0;
}

int weir_conf_dns_dup(struct weir_conf_pool *p, const struct weir_conf_pool *s)
{
    p->dns = NULL;
    p->ndns = 0;
    if (s->ndns == 0)
        return 0;
    p->dns = calloc(s->ndns, sizeof(*p->dns));
    if (p->dns == NULL)
        return -1;
    for (size_t i = 0; i < s->ndns; i++) {
        p->dns[i] = s->dns[i];
        p->dns[i].text = strdup(s->dns[i].text);
        p->dns[i].name = strdup(s->dns[i].name);
        p->ndns++;
        if (p->dns[i].text == NULL || p->dns[i].name == NULL)
            return -1;
    }
    return 0;
}

void weir_conf_resolvers_free(struct weir_conf *c)
{
    for (size_t i = 0; i < c->nresolvers; i++)
        free(c->resolvers[i].text);
    free(c->resolvers);
    c->resolvers = NULL;
    c->nresolvers = 0;
}

int weir_conf_resolvers_dup(struct weir_conf *d, const struct weir_conf *s)
{
    d->resolvers = NULL;
    d->nresolvers = 0;
    if (s->nresolvers == 0)
        return 0;
    d->resolvers = calloc(s->nresolvers, sizeof(*d->resolvers));
    if (d->resolvers == NULL)
        return -1;
    for (size_t i = 0; i < s->nresolvers; i++) {
        d->resolvers[i] = s->resolvers[i];
        d->resolvers[i].text = strdup(s->resolvers[i].text);
        d->nresolvers++;
        if (d->resolvers[i].text == NULL)
            return -1;
    }
    return 0;
}
