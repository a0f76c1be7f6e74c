/*
 * assets — the dashboard's files (dashboard.html, .css, .js), compiled into
 * the binary by assets.c, so the page needs nothing from outside limpet.
 */
#ifndef LIMPET_ADMIN_ASSETS_H
#define LIMPET_ADMIN_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

struct admin_asset {
    const char *name;           /* URL path without the leading '/' ("" for the page) */
    const char *content_type;
    const char *data;
    size_t size;
};

/* Fills *out with the asset served at "/" + name; false when there is none. */
bool admin_asset_find(const char *name, struct admin_asset *out);

#endif
