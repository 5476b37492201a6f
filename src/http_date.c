/*
 * http_date.c - HTTP-date (RFC 9110 5.6.7): parsing all three forms and
 * formatting IMF-fixdate. Pure functions, any thread; contracts in
 * include/weir/http_date.h. Used by the cache's freshness rules and by the
 * response heads (Date on answers that lack it).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "weir/http_date.h"

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static const char *const day_short[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const day_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                        "Thursday", "Friday", "Saturday"};
static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int match_name(const char *p, size_t n, const char *const *names, int count)
{
    int i;
    for (i = 0; i < count; i++)
        if (strlen(names[i]) == n && memcmp(p, names[i], n) == 0)
            return i;
    return -1;
}

static int digits(const char *p, size_t n)
{
    int v = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if (!is_digit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (unsigned)((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1);
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int month_days(int y, int m)
{
    static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return md[m - 1];
}

/* "HH:MM:SS" at p (8 bytes). */
static int parse_time(const char *p, int *h, int *mi, int *s)
{
    if (p[2] != ':' || p[5] != ':')
        return -1;
    *h = digits(p, 2);
    *mi = digits(p + 3, 2);
    *s = digits(p + 6, 2);
    if (*h < 0 || *mi < 0 || *s < 0 || *h > 23 || *mi > 59 || *s > 60)
        return -1;
    return 0;
}

static int64_t make_time(int y, int mon, int d, int h, int mi, int s)
{
    int64_t t;

    if (mon < 0 || y < 1 || d < 1 || d > month_days(y, mon + 1))
        return -1;
    t = days_from_civil(y, mon + 1, d) * 86400 + h * 3600 + mi * 60 + s;
    return t < 0 ? 0 : t;
}

int64_t weir_http_date_parse(const char *v, size_t n, int64_t now)
{
    int h, mi, s, d, y, mon;
    const char *comma;

    if (v == NULL || n < 24)
        return -1;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (n == 29 && v[3] == ',') {
        if (match_name(v, 3, day_short, 7) < 0 || v[4] != ' ' || v[7] != ' ' || v[11] != ' ' ||
            v[16] != ' ' || v[25] != ' ' || memcmp(v + 26, "GMT", 3) != 0)
            return -1;
        d = digits(v + 5, 2);
        mon = match_name(v + 8, 3, months, 12);
        y = digits(v + 12, 4);
        if (d < 0 || y < 0 || parse_time(v + 17, &h, &mi, &s) < 0)
            return -1;
        return make_time(y, mon, d, h, mi, s);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    if (n == 24 && v[3] == ' ') {
        if (match_name(v, 3, day_short, 7) < 0 || v[7] != ' ' || v[10] != ' ' || v[19] != ' ')
            return -1;
        mon = match_name(v + 4, 3, months, 12);
        d = v[8] == ' ' ? digits(v + 9, 1) : digits(v + 8, 2);
        y = digits(v + 20, 4);
        if (d < 0 || y < 0 || parse_time(v + 11, &h, &mi, &s) < 0)
            return -1;
        return make_time(y, mon, d, h, mi, s);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    comma = memchr(v, ',', n < 10 ? n : 10);
    if (comma != NULL) {
        const char *p = comma + 1;
        size_t rest = n - (size_t)(p - v);
        int yy, cur, century;
        int64_t ny;

        if (match_name(v, (size_t)(comma - v), day_long, 7) < 0 || rest != 23 || p[0] != ' ' || p[3] != '-' ||
            p[7] != '-' || p[10] != ' ' || p[19] != ' ' || memcmp(p + 20, "GMT", 3) != 0)
            return -1;
        d = digits(p + 1, 2);
        mon = match_name(p + 4, 3, months, 12);
        yy = digits(p + 8, 2);
        if (d < 0 || yy < 0 || parse_time(p + 11, &h, &mi, &s) < 0)
            return -1;
        /* RFC 9110 §5.6.7: a year more than 50 years in the future is the
         * most recent past year with the same last two digits. */
        ny = now > 0 ? now / 86400 : 0;
        cur = 1970;
        while (days_from_civil(cur + 1, 1, 1) <= ny)
            cur++;
        century = cur - cur % 100;
        y = century + yy;
        if (y > cur + 50)
            y -= 100;
        return make_time(y, mon, d, h, mi, s);
    }
    return -1;
}

size_t weir_http_date_format(int64_t t, char *out)
{
    struct tm tm;
    time_t tt = (time_t)(t < 0 ? 0 : t);

    /* not strftime: %a and %b follow the locale */
    gmtime_r(&tt, &tm);
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_short[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], (tm.tm_year + 1900) % 10000, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return strlen(out);
}
