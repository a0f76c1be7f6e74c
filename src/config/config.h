/*
 * config — the JSON config file (SPEC §2) as typed, validated structs.
 *
 * config_load_file() reads the file with jansson, walks the whole schema and
 * reports every problem it finds (not just the first): syntax errors as
 * "FILE:LINE:COL: message", schema errors as "FILE: path.to.key: message" where
 * the path is a JSON path such as `pools[0].origins[2].address`. Unknown keys,
 * wrong types, unparsable addresses, duplicate or dangling names and values
 * out of range are all errors. Features the schema names but this build does
 * not implement yet are refused with "PATH: not supported yet".
 *
 * The result is the typed configuration of snapshot/settings.h: config/ is a
 * pure parser, and the data path never includes it.
 */
#ifndef LIMPET_CONFIG_CONFIG_H
#define LIMPET_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "snapshot/settings.h"

/* Problems found while loading, one formatted message each. */
struct config_errors {
    char **messages;
    size_t count;
};

/*
 * Loads and validates a config file. Returns the config, or NULL when at least
 * one problem was found (all of them in errs, which the caller frees with
 * config_errors_fini()). Never exits, never crashes on bad input.
 */
struct config *config_load_file(const char *path, struct config_errors *errs);

/* Same from a JSON text in memory; `name` stands for the file in messages. */
struct config *config_load_string(const char *json_text, const char *name,
                                  struct config_errors *errs);

/* Same from a parsed document (a reference is taken; the caller keeps its own).
 * Used to apply run-time changes: edit a copy of cfg->doc, load it. */
struct config *config_load_json(struct json_t *doc, const char *name,
                                struct config_errors *errs);

/*
 * Settings that are valid but will likely not work as meant (a route-mode
 * app_cookie that no origin is known to set), one message each in out as
 * "NAME: PATH: warning: ..." (out freed with config_errors_fini()). Returns
 * how many. `limpet -t` prints them and still exits 0.
 */
size_t config_warnings(const struct config *cfg, const char *name,
                       struct config_errors *out);

void config_errors_fini(struct config_errors *errs);

#endif
