/*
 * Unit tests for src/admin/state.c: run-time changes applied to config
 * documents (merge patches, origin add/remove and their refusals), the
 * compaction of the change list, the state file round trip and its
 * atomic rewrite, and replay onto a configuration that lacks some names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/state.h"

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    if (!v)
        fail_msg("bad test JSON: %s: %s", err.text, text);
    return v;
}

static void assert_json_eq(const json_t *got, const char *want_text)
{
    json_t *want = parse(want_text);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s\nwant %s", g, w);
    }
    json_decref(want);
}

static const char DOC[] =
    "{\"listen\": [{\"address\": \"127.0.0.1:1\", \"load_balancer\": \"www\"}],"
    " \"pools\": [{\"name\": \"app\", \"origins\": ["
    "   {\"name\": \"s1\", \"address\": \"127.0.0.1:9001\"},"
    "   {\"name\": \"s2\", \"address\": \"127.0.0.1:9002\"}]}],"
    " \"load_balancers\": [{\"name\": \"www\", \"default_pools\": [\"app\"],"
    "   \"session_affinity_attributes\": {\"samesite\": \"Lax\", \"app_cookie\":"
    "     {\"name\": \"J\", \"mode\": \"prefix\"}}}]}";

static enum change_result apply(json_t *doc, const char *change, char *msg)
{
    json_t *c = parse(change);
    enum change_result r = change_apply(doc, c, msg, 256);
    json_decref(c);
    return r;
}

static void test_patch_load_balancer_is_a_merge_patch(void **state)
{
    (void)state;
    json_t *doc = parse(DOC);
    char msg[256];
    assert_int_equal(apply(doc, "{\"op\": \"patch_load_balancer\", \"load_balancer\": \"www\","
                                " \"set\": {\"session_affinity\": \"cookie\","
                                " \"session_affinity_attributes\": {\"secure\": \"Always\","
                                "   \"samesite\": null, \"app_cookie\": {\"mode\": \"route\"}}}}",
                           msg), CHANGE_OK);
    json_t *lb = json_array_get(json_object_get(doc, "load_balancers"), 0);
    assert_json_eq(lb, "{\"name\": \"www\", \"default_pools\": [\"app\"],"
                       " \"session_affinity\": \"cookie\", \"session_affinity_attributes\":"
                       " {\"secure\": \"Always\", \"app_cookie\": {\"name\": \"J\","
                       " \"mode\": \"route\"}}}");
    assert_int_equal(apply(doc, "{\"op\": \"patch_load_balancer\", \"load_balancer\": \"x\","
                                " \"set\": {}}", msg), CHANGE_NOT_FOUND);
    assert_string_equal(msg, "no load balancer \"x\"");
    json_decref(doc);
}

static void test_origins(void **state)
{
    (void)state;
    json_t *doc = parse(DOC);
    json_t *origins = json_object_get(json_array_get(json_object_get(doc, "pools"), 0),
                                      "origins");
    char msg[256];
    assert_int_equal(apply(doc, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": "
                                "\"s2\", \"set\": {\"state\": \"draining\", \"weight\": 3}}",
                           msg), CHANGE_OK);
    assert_json_eq(json_array_get(origins, 1), "{\"name\": \"s2\", \"address\": "
                   "\"127.0.0.1:9002\", \"state\": \"draining\", \"weight\": 3}");
    assert_int_equal(apply(doc, "{\"op\": \"add_origin\", \"pool\": \"app\", \"origin\": "
                                "{\"name\": \"s3\", \"address\": \"127.0.0.1:9003\"}}", msg),
                     CHANGE_OK);
    assert_int_equal(json_array_size(origins), 3);
    assert_int_equal(apply(doc, "{\"op\": \"add_origin\", \"pool\": \"app\", \"origin\": "
                                "{\"name\": \"s3\", \"address\": \"127.0.0.1:9004\"}}", msg),
                     CHANGE_CONFLICT);
    assert_string_equal(msg, "pool \"app\" already has an origin named \"s3\"");
    assert_int_equal(apply(doc, "{\"op\": \"remove_origin\", \"pool\": \"app\", \"origin\": "
                                "\"s1\"}", msg), CHANGE_OK);
    assert_int_equal(apply(doc, "{\"op\": \"remove_origin\", \"pool\": \"app\", \"origin\": "
                                "\"s2\"}", msg), CHANGE_OK);
    assert_int_equal(apply(doc, "{\"op\": \"remove_origin\", \"pool\": \"app\", \"origin\": "
                                "\"s3\"}", msg), CHANGE_CONFLICT);
    assert_non_null(strstr(msg, "last origin of pool \"app\""));
    assert_int_equal(apply(doc, "{\"op\": \"remove_origin\", \"pool\": \"app\", \"origin\": "
                                "\"s9\"}", msg), CHANGE_NOT_FOUND);
    assert_string_equal(msg, "no origin \"s9\" in pool \"app\"");
    assert_int_equal(apply(doc, "{\"op\": \"patch_origin\", \"pool\": \"zz\", \"origin\": "
                                "\"s3\", \"set\": {}}", msg), CHANGE_NOT_FOUND);
    assert_string_equal(msg, "no pool \"zz\"");
    assert_int_equal(apply(doc, "{\"op\": \"explode\", \"pool\": \"app\"}", msg),
                     CHANGE_MALFORMED);
    assert_int_equal(apply(doc, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": "
                                "\"s3\", \"set\": 5}", msg), CHANGE_MALFORMED);
    assert_int_equal(apply(doc, "[]", msg), CHANGE_MALFORMED);
    json_decref(doc);
}

static json_t *applied_one_by_one;     /* DOC with every recorded change applied */

/* Records change and applies it to applied_one_by_one (when set). */
static void record(struct admin_state *st, const char *change)
{
    json_t *c = parse(change);
    if (applied_one_by_one) {
        char msg[256];
        assert_int_equal(change_apply(applied_one_by_one, c, msg, sizeof(msg)), CHANGE_OK);
    }
    state_record(st, c);
    json_decref(c);
}

/* The list without the "time" members, compact. */
static void assert_changes(const struct admin_state *st, const char *want)
{
    json_t *copy = json_deep_copy(st->changes);
    size_t i;
    json_t *c;
    json_array_foreach(copy, i, c)
        json_object_del(c, "time");
    assert_json_eq(copy, want);
    json_decref(copy);
}

static void test_record_compacts(void **state)
{
    (void)state;
    struct admin_state st;
    assert_int_equal(state_init(&st, NULL), 0);
    applied_one_by_one = parse(DOC);
    record(&st, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"s1\","
                " \"set\": {\"state\": \"draining\"}}");
    record(&st, "{\"op\": \"patch_load_balancer\", \"load_balancer\": \"www\","
                " \"set\": {\"session_affinity_attributes\": {\"secure\": \"Always\"}}}");
    record(&st, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"s1\","
                " \"set\": {\"state\": \"enabled\", \"weight\": 2}}");
    record(&st, "{\"op\": \"patch_load_balancer\", \"load_balancer\": \"www\","
                " \"set\": {\"session_affinity_attributes\": {\"samesite\": null}}}");
    assert_changes(&st, "[{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"s1\","
                        "  \"set\": {\"state\": \"enabled\", \"weight\": 2}},"
                        " {\"op\": \"patch_load_balancer\", \"load_balancer\": \"www\","
                        "  \"set\": {\"session_affinity_attributes\": {\"secure\": \"Always\","
                        "   \"samesite\": null}}}]");
    /* Removing s1 drops its patches; adding then patching folds into the add;
     * adding then removing leaves nothing. */
    record(&st, "{\"op\": \"remove_origin\", \"pool\": \"app\", \"origin\": \"s1\"}");
    record(&st, "{\"op\": \"add_origin\", \"pool\": \"app\", \"origin\": {\"name\": \"s1\","
                " \"address\": \"127.0.0.1:7\"}}");
    record(&st, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"s1\","
                " \"set\": {\"state\": \"disabled\"}}");
    record(&st, "{\"op\": \"add_origin\", \"pool\": \"app\", \"origin\": {\"name\": \"s9\","
                " \"address\": \"127.0.0.1:9\"}}");
    record(&st, "{\"op\": \"remove_origin\", \"pool\": \"app\", \"origin\": \"s9\"}");
    assert_changes(&st, "[{\"op\": \"patch_load_balancer\", \"load_balancer\": \"www\","
                        "  \"set\": {\"session_affinity_attributes\": {\"secure\": \"Always\","
                        "   \"samesite\": null}}},"
                        " {\"op\": \"remove_origin\", \"pool\": \"app\", \"origin\": \"s1\"},"
                        " {\"op\": \"add_origin\", \"pool\": \"app\", \"origin\": {\"name\":"
                        "  \"s1\", \"address\": \"127.0.0.1:7\", \"state\": \"disabled\"}}]");
    /* Replaying the compacted list gives what the changes one by one gave. */
    json_t *replayed = parse(DOC);
    size_t i;
    json_t *c;
    char msg[256];
    json_array_foreach(st.changes, i, c)
        assert_int_equal(change_apply(replayed, c, msg, sizeof(msg)), CHANGE_OK);
    assert_true(json_equal(replayed, applied_one_by_one));
    json_decref(replayed);
    json_decref(applied_one_by_one);
    applied_one_by_one = NULL;
    state_clear(&st);
    assert_int_equal(json_array_size(st.changes), 0);
    state_fini(&st);
}

static void test_file_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/limpet-state-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], err[512];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    struct admin_state st, back;
    assert_int_equal(state_init(&st, path), 0);
    record(&st, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"s1\","
                " \"set\": {\"state\": \"draining\"}}");
    assert_int_equal(state_save(&st, err, sizeof(err)), 0);
    assert_int_equal(state_init(&back, path), 0);
    state_load(&back);
    assert_true(json_equal(st.changes, back.changes));
    state_fini(&back);

    /* A file cut off mid-write is ignored: empty state. */
    FILE *f = fopen(path, "w");
    fputs("{\"version\": 1, \"changes\": [{\"op\": \"patch_or", f);
    fclose(f);
    assert_int_equal(state_init(&back, path), 0);
    state_load(&back);
    assert_int_equal(json_array_size(back.changes), 0);
    state_fini(&back);

    /* Saving replaces it whole and leaves no temporary file. */
    assert_int_equal(state_save(&st, err, sizeof(err)), 0);
    assert_int_equal(state_init(&back, path), 0);
    state_load(&back);
    assert_int_equal(json_array_size(back.changes), 1);
    state_fini(&back);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test \"$(ls %s)\" = state.json", dir);
    assert_int_equal(system(cmd), 0);

    /* An unwritable place is an error naming the file. */
    struct admin_state bad;
    assert_int_equal(state_init(&bad, "/nonexistent-dir/x/state.json"), 0);
    assert_true(state_save(&bad, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "/nonexistent-dir/x/state.json"));
    state_fini(&bad);
    state_fini(&st);
    unlink(path);
    rmdir(dir);
}

static void test_replay_skips_what_does_not_apply(void **state)
{
    (void)state;
    struct config_errors errs;
    struct config *cfg = config_load_string(DOC, "t.json", &errs);
    assert_non_null(cfg);
    struct admin_state st;
    assert_int_equal(state_init(&st, NULL), 0);
    record(&st, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"gone\","
                " \"set\": {\"state\": \"draining\"}}");
    record(&st, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"s1\","
                " \"set\": {\"weight\": 99999}}");                /* refused by the config */
    record(&st, "{\"op\": \"patch_origin\", \"pool\": \"app\", \"origin\": \"s2\","
                " \"set\": {\"state\": \"disabled\"}}");
    cfg = state_apply(&st, cfg);
    assert_non_null(cfg);
    assert_null(cfg->path);                 /* as config_load_string() made it */
    assert_int_equal(cfg->pools[0].origins[0].weight, 1);
    assert_int_equal(cfg->pools[0].origins[1].state, ORIGIN_DISABLED);
    config_free(cfg);
    state_fini(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patch_load_balancer_is_a_merge_patch),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_record_compacts),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_replay_skips_what_does_not_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
