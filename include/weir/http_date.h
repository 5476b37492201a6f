/*
 * http_date.h - HTTP-date (RFC 9110 5.6.7). Pure functions, any thread.
 */
#ifndef WEIR_HTTP_DATE_H
#define WEIR_HTTP_DATE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parse an HTTP-date: IMF-fixdate, the obsolete RFC 850 form (two-digit
 * year: a year more than 50 years after `now` is taken in the previous
 * century) and asctime. Returns seconds since the epoch (dates before 1970
 * give 0), or -1 when v[0..n) is not a valid date (wrong or wrongly cased
 * names, out-of-range fields, not GMT, trailing bytes). now is used only
 * for RFC 850 years.
 */
int64_t weir_http_date_parse(const char *v, size_t n, int64_t now);

/* Format t as IMF-fixdate into out (at least 30 bytes). Returns the length (29). */
size_t weir_http_date_format(int64_t t, char *out);

#endif
