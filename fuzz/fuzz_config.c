/*
 * fuzz_config — libFuzzer target: the config loader (src/config/config.c,
 * config_load_string) on arbitrary text, JSON or not.
 *
 * The loader promises "never exits, never crashes on bad input" and to report
 * every problem (SPEC §1 `limpet -t`). Checked here: no crash, leak or
 * undefined behaviour; a refusal comes with at least one message and a
 * success with none; every message is a non-empty line that names the
 * config ("fuzz.json:" prefix); an accepted config has at least one listener,
 * and loading it a second time gives the same verdict.
 */
#include "config/config.h"
#include "fuzz_common.h"

static void check_messages(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++) {
        const char *m = errs->messages[i];
        FUZZ_CHECK(m != NULL && m[0] != '\0');
        FUZZ_CHECK(strncmp(m, "fuzz.json", 9) == 0);
        FUZZ_CHECK(strchr(m, '\n') == NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    struct config_errors errs = {0};
    struct config *cfg = config_load_string(text, "fuzz.json", &errs);
    check_messages(&errs);
    if (cfg) {
        FUZZ_CHECK(errs.count == 0);
        FUZZ_CHECK(cfg->num_listeners >= 1);
        struct config_errors errs2 = {0};
        struct config *again = config_load_string(text, "fuzz.json", &errs2);
        FUZZ_CHECK(again != NULL && errs2.count == 0);
        config_free(again);
        config_errors_fini(&errs2);
        config_free(cfg);
    } else {
        FUZZ_CHECK(errs.count > 0);
    }
    config_errors_fini(&errs);
    free(text);
    return 0;
}
