/* test_bytecode.c: tests of host/bytecode.c and of the library searcher
 * (host/vm.c) that reads its cache. A cache file is taken only when it was
 * made from the same text under the same chunk name: the tests make cache
 * files by hand (the format bytecode.h gives) whose chunk returns
 * "cached" for a source that returns "source", so which of the two was
 * loaded shows in what the chunk returns. */
#include <stdint.h>

#include "bytecode.h"
#include "helpers.h"

static const char *tmp_dir;   /* th_tmpdir("bytecode"), made by main */

static void path_in_tmp(char *out, size_t cap, const char *rel)
{
    snprintf(out, cap, "%s/%s", tmp_dir, rel);
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int collect(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    FILE *f = ud;
    return fwrite(p, 1, n, f) == n ? 0 : 1;
}

/* A cache file at cache_path whose header says it was made from `text`
 * under chunk name `chunkname`, holding the chunk of `code` (bytecode
 * written by this test's own LuaJIT). `cut` bytes are left off its end. */
static int write_cache(const char *cache_path, const char *text, const char *chunkname, const char *code,
                       size_t cut)
{
    char full[PATH_MAX + 16], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", cache_path);
    *strrchr(dir, '/') = '\0';
    if (th_make_dirs(dir) != 0) return -1;
    snprintf(full, sizeof full, "%s.full", cache_path);
    FILE *f = fopen(full, "wb");
    if (!f) return -1;
    uint64_t len = strlen(text), hash = fnv1a(text, strlen(text));
    uint32_t name_len = (uint32_t)strlen(chunkname);
    fwrite("qhostbc1", 1, 8, f);
    fwrite(&len, 8, 1, f);
    fwrite(&hash, 8, 1, f);
    fwrite(&name_len, 4, 1, f);
    fwrite(chunkname, 1, name_len, f);
    lua_State *L = luaL_newstate();
    int rc = luaL_loadbuffer(L, code, strlen(code), chunkname) == 0 && lua_dump(L, collect, f) == 0 ? 0 : -1;
    lua_close(L);
    if (fclose(f) != 0) rc = -1;
    size_t n = 0;
    char *bytes = th_read_file(full, &n);
    if (!bytes || n < cut) rc = -1;
    else if (th_write_file(cache_path, bytes, n - cut, 0644) != 0) rc = -1;
    free(bytes);
    unlink(full);
    return rc;
}

/* What the chunk loaded from path (with the cache at cache_path, or none)
 * returns when called, or its load error prefixed with "load: ". */
static const char *load_and_call(const char *path, const char *cache_path)
{
    static char out[1024];
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int top = lua_gettop(L);
    if (qh_bytecode_load(L, path, cache_path) != 0) {
        snprintf(out, sizeof out, "load: %s", lua_tostring(L, -1));
    } else if (lua_gettop(L) != top + 1) {
        snprintf(out, sizeof out, "(the stack grew by %d)", lua_gettop(L) - top);
    } else if (lua_pcall(L, 0, 1, 0) != 0) {
        snprintf(out, sizeof out, "error: %s", lua_tostring(L, -1));
    } else {
        snprintf(out, sizeof out, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(not a string)");
    }
    lua_close(L);
    return out;
}

#define SOURCE "return 'source'\n"

/* A module file holding SOURCE at <tmp>/<dir>/m.lua, the path of its cache
 * file beside it, and the chunk name it loads under. */
typedef struct fixture {
    char src[PATH_MAX], cache[PATH_MAX], name[PATH_MAX + 1];
} fixture;

static int fixture_in(fixture *f, const char *dir)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/m.lua", dir);
    path_in_tmp(f->src, sizeof f->src, rel);
    snprintf(rel, sizeof rel, "%s/m.ljbc", dir);
    path_in_tmp(f->cache, sizeof f->cache, rel);
    snprintf(f->name, sizeof f->name, "@%s", f->src);
    return th_write_file(f->src, SOURCE, strlen(SOURCE), 0644);
}

TEST(a_cache_made_from_the_same_text_and_name_is_taken)
{
    fixture f;
    CHECK_EQ_INT(fixture_in(&f, "same"), 0);
    CHECK_EQ_INT(write_cache(f.cache, SOURCE, f.name, "return 'cached'", 0), 0);
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "cached");
    /* without a cache, and with a cache file that is not there: the source */
    CHECK_EQ_STR(load_and_call(f.src, NULL), "source");
    path_in_tmp(f.cache, sizeof f.cache, "same/absent.ljbc");
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "source");
}

TEST(an_edited_source_is_parsed_not_taken_from_the_cache)
{
    fixture f;
    CHECK_EQ_INT(fixture_in(&f, "edited"), 0);
    CHECK_EQ_INT(write_cache(f.cache, SOURCE, f.name, "return 'cached'", 0), 0);
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "cached");
    /* one byte changed, the length the same */
    const char *edited = "return 'sourcf'\n";
    CHECK_EQ_INT(th_write_file(f.src, edited, strlen(edited), 0644), 0);
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "sourcf");
    /* a byte more */
    const char *longer = "return 'source' \n";
    CHECK_EQ_INT(th_write_file(f.src, longer, strlen(longer), 0644), 0);
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "source");
}

TEST(a_cache_made_under_another_name_is_not_taken)
{
    fixture f;
    CHECK_EQ_INT(fixture_in(&f, "moved"), 0);
    /* the same text, compiled where the checkout was before it moved */
    CHECK_EQ_INT(write_cache(f.cache, SOURCE, "@/elsewhere/moved/m.lua", "return 'cached'", 0), 0);
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "source");
}

TEST(a_damaged_cache_is_not_taken)
{
    fixture f;
    CHECK_EQ_INT(fixture_in(&f, "damaged"), 0);
    /* its bytecode cut short: LuaJIT refuses it, the source is parsed */
    CHECK_EQ_INT(write_cache(f.cache, SOURCE, f.name, "return 'cached'", 6), 0);
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "source");
    /* a header cut inside the chunk name, and a file of another kind */
    size_t header = 28 + strlen(f.name);
    CHECK_EQ_INT(write_cache(f.cache, SOURCE, f.name, "return 'cached'", 0), 0);
    size_t n = 0;
    char *bytes = th_read_file(f.cache, &n);
    CHECK(bytes != NULL);
    if (bytes) {
        CHECK_EQ_INT(th_write_file(f.cache, bytes, header - 3, 0644), 0);
        CHECK_EQ_STR(load_and_call(f.src, f.cache), "source");
        free(bytes);
    }
    CHECK_EQ_INT(th_write_file(f.cache, SOURCE, strlen(SOURCE), 0644), 0);
    CHECK_EQ_STR(load_and_call(f.src, f.cache), "source");
}

TEST(a_missing_source_fails_as_loadfile_does)
{
    char src[PATH_MAX], want[PATH_MAX + 64];
    path_in_tmp(src, sizeof src, "missing/m.lua");
    snprintf(want, sizeof want, "load: cannot open %s", src);
    const char *got = load_and_call(src, NULL);
    CHECK(strncmp(got, want, strlen(want)) == 0);
}

/* What qh_bytecode_write makes is taken, and keeps the file's name and
 * line numbers in errors and in debug.getinfo. */
TEST(a_written_cache_is_taken_and_keeps_names_and_lines)
{
    char src[PATH_MAX], cache[PATH_MAX], want[PATH_MAX * 3], err[1024] = "";
    path_in_tmp(src, sizeof src, "written/m.lua");
    path_in_tmp(cache, sizeof cache, "written/m.ljbc");
    const char *text = "local t = {}\n"
                       "\n"
                       "return debug.getinfo(1, 'S').source .. ' ' .. select(2, pcall(function() return t.x.y end))\n";
    CHECK_EQ_INT(th_write_file(src, text, strlen(text), 0644), 0);
    lua_State *L = luaL_newstate();
    lua_pushliteral(L, "kept");
    CHECK_EQ_INT(qh_bytecode_write(L, src, src, cache, err, sizeof err), 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(lua_gettop(L), 1);
    lua_close(L);
    snprintf(want, sizeof want, "@%s %s:3: attempt to index field 'x' (a nil value)", src, src);
    CHECK_EQ_STR(load_and_call(src, cache), want);
    /* that it was the cache: its header names this text and this file */
    size_t n = 0;
    char *bytes = th_read_file(cache, &n);
    CHECK(bytes != NULL && n > 28 && memcmp(bytes, "qhostbc1", 8) == 0);
    if (bytes && n > 28) {
        uint64_t len, hash;
        memcpy(&len, bytes + 8, 8);
        memcpy(&hash, bytes + 16, 8);
        CHECK(len == strlen(text) && hash == fnv1a(text, strlen(text)));
    }
    free(bytes);
}

TEST(write_reports_what_it_cannot_do)
{
    char src[PATH_MAX], cache[PATH_MAX], want[PATH_MAX * 2], err[PATH_MAX * 2] = "";
    lua_State *L = luaL_newstate();
    path_in_tmp(src, sizeof src, "fails/bad.lua");
    path_in_tmp(cache, sizeof cache, "fails/bad.ljbc");
    const char *bad = "return (\n";
    CHECK_EQ_INT(th_write_file(src, bad, strlen(bad), 0644), 0);
    CHECK_EQ_INT(qh_bytecode_write(L, src, src, cache, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2:", src);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    CHECK(access(cache, F_OK) != 0);

    path_in_tmp(src, sizeof src, "fails/absent.lua");
    CHECK_EQ_INT(qh_bytecode_write(L, src, src, cache, err, sizeof err), -1);
    snprintf(want, sizeof want, "cannot read %s: No such file or directory", src);
    CHECK_EQ_STR(err, want);

    path_in_tmp(src, sizeof src, "fails/good.lua");
    CHECK_EQ_INT(th_write_file(src, SOURCE, strlen(SOURCE), 0644), 0);
    path_in_tmp(cache, sizeof cache, "fails/no/such/folder/good.ljbc");
    CHECK_EQ_INT(qh_bytecode_write(L, src, src, cache, err, sizeof err), -1);
    snprintf(want, sizeof want, "cannot write %s: No such file or directory", cache);
    CHECK_EQ_STR(err, want);
    CHECK_EQ_INT(lua_gettop(L), 0);
    lua_close(L);
}

/* The host's states find the library's modules through the cache in
 * <root>/build/bytecode (a checkout) or <root>/bytecode (an install). */
static void check_searcher_uses(const char *cache_dir_rel, const char *root_rel)
{
    char root[512], src[PATH_MAX], other[PATH_MAX], cache[PATH_MAX], name[PATH_MAX + 1], init[PATH_MAX],
        err[PATH_MAX];
    path_in_tmp(root, sizeof root, root_rel);
    snprintf(src, sizeof src, "%s/lua/qhost/probe.lua", root);
    snprintf(other, sizeof other, "%s/lua/qhost/plain/init.lua", root);
    snprintf(cache, sizeof cache, "%s/%s/qhost.probe.ljbc", root, cache_dir_rel);
    snprintf(name, sizeof name, "@%s", src);
    CHECK_EQ_INT(th_write_file(src, SOURCE, strlen(SOURCE), 0644), 0);
    CHECK_EQ_INT(th_write_file(other, "return 'plain'\n", 15, 0644), 0);
    snprintf(init, sizeof init, "%s/lua/qhost/init.lua", root);
    CHECK_EQ_INT(th_write_file(init, "return {}\n", 10, 0644), 0);
    CHECK_EQ_INT(write_cache(cache, SOURCE, name, "return 'cached'", 0), 0);
    setenv("QHOST_ROOT", root, 1);
    qh_paths paths;
    CHECK_EQ_INT(qh_vm_locate(&paths, err, sizeof err), 0);
    snprintf(name, sizeof name, "%s/%s", root, cache_dir_rel);
    CHECK_EQ_STR(paths.bytecode, name);
    lua_State *L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    CHECK(L != NULL);
    if (L) {
        CHECK_EQ_STR(th_run(L, "return require('qhost.probe')"), "cached");
        /* a module without a cache file, found as <name>/init.lua */
        CHECK_EQ_STR(th_run(L, "return require('qhost.plain')"), "plain");
        /* a missing one: the usual message, with the paths searched */
        CHECK(strstr(th_run_error(L, "require('qhost.absent')"), "module 'qhost.absent' not found") != NULL);
        qh_vm_close(L);
    }
}

TEST(the_library_searcher_reads_a_checkouts_cache)
{
    check_searcher_uses("build/bytecode", "checkout");
}

TEST(the_library_searcher_reads_an_installs_cache)
{
    check_searcher_uses("bytecode", "install");
}

TEST(without_a_cache_folder_the_library_is_parsed)
{
    char root[PATH_MAX], file[PATH_MAX + 64], err[512];
    path_in_tmp(root, sizeof root, "nocache");
    snprintf(file, sizeof file, "%s/lua/qhost/init.lua", root);
    CHECK_EQ_INT(th_write_file(file, "return { ok = 'parsed' }\n", 25, 0644), 0);
    setenv("QHOST_ROOT", root, 1);
    qh_paths paths;
    CHECK_EQ_INT(qh_vm_locate(&paths, err, sizeof err), 0);
    CHECK_EQ_STR(paths.bytecode, "");
    lua_State *L = qh_vm_new("lua", QH_VM_LUAJIT_MEMORY);
    CHECK(L != NULL);
    if (L) {
        CHECK_EQ_STR(th_run(L, "return require('qhost').ok"), "parsed");
        qh_vm_close(L);
    }
}

int main(void)
{
    tmp_dir = th_tmpdir("bytecode");
    if (!tmp_dir) return 2;
    RUN(a_cache_made_from_the_same_text_and_name_is_taken);
    RUN(an_edited_source_is_parsed_not_taken_from_the_cache);
    RUN(a_cache_made_under_another_name_is_not_taken);
    RUN(a_damaged_cache_is_not_taken);
    RUN(a_missing_source_fails_as_loadfile_does);
    RUN(a_written_cache_is_taken_and_keeps_names_and_lines);
    RUN(write_reports_what_it_cannot_do);
    RUN(the_library_searcher_reads_a_checkouts_cache);
    RUN(the_library_searcher_reads_an_installs_cache);
    RUN(without_a_cache_folder_the_library_is_parsed);
    th_remove_tree(tmp_dir);
    return check_summary();
}
