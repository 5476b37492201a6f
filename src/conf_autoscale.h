/* conf_autoscale.h - the loader's handler for the `autoscale` section
 * (private to the loader: conf.c lists it in its top-level table). */
#ifndef WEIR_SRC_CONF_AUTOSCALE_H
#define WEIR_SRC_CONF_AUTOSCALE_H

#include "conf_int.h"

/* Handler of the top-level key (KEY_CALL, K_ANY: it checks for a group): sets the section's defaults,
 * walks it, checks the rules and alerts against the file's pools. */
void conf_key_autoscale(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj);

#endif
