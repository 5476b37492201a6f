/*
 * admin_autoscale.c - GET /autoscale and GET /alerts of the admin endpoint
 * and GET /history
 * (control thread; documents built by autoscaler.c and history.c).
 */
#include "config.h"

#include <string.h>

#include <event2/http.h>

#include "weir/admin.h"
#include "weir/admin_autoscale.h"
#include "weir/autoscaler.h"
#include "weir/history.h"

int weir_admin_autoscale_route(struct evhttp_request *req, const char *seg, int is_get)
{
    json_t *(*render)(void);

    if (strcmp(seg, "autoscale") == 0)
        render = weir_autoscaler_json;
    else if (strcmp(seg, "alerts") == 0)
        render = weir_autoscaler_alerts_json;
    else if (strcmp(seg, "history") == 0)
        render = weir_history_json;
    else
        return 0;
    if (!is_get) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        weir_admin_reply_error(req, 405, "method not allowed (allowed: GET, HEAD)");
        return 1;
    }
    json_t *doc = render();
    if (doc == NULL) {
        weir_admin_reply_error(req, 500, "out of memory");
        return 1;
    }
    weir_admin_reply_json(req, 200, doc);
    return 1;
}
