/* csv.c: the `qhost.csvreader` Lua module (see csv.h).
 *
 *   local r, err = csvreader.open(path, { delimiter = ",", quotechar = '"',
 *                                         field_size_limit = 131072 })
 *   local fields, line = r:read_row()   -- nil at EOF; nil, err if malformed
 *   local json, err = r:row_json(header, fields, line)
 *   local json, line = r:read_json(header)   -- a row straight to its JSON text
 *   r:set_header(header); r:ptr()     -- then qh_ffi_csv_next_json per row
 *   r:close()
 *
 * libcsv pushes fields and records through callbacks for whatever bytes it
 * is given; Lua wants to pull one record per call. So the callbacks only
 * append to C arrays (never call Lua), and read_row feeds libcsv one
 * physical line at a time until at least one record is complete. Feeding by
 * line also gives line numbers for free: every byte libcsv sees in one call
 * sits on the same line, so a record starts on the line of the call in which
 * the parser left its "no row begun" state.
 *
 * Like Python's csv module (which Quix's CSVSource uses): blank lines are
 * skipped, spaces are data (never trimmed), a line ends at LF, CRLF or CR,
 * and a field may not exceed field_size_limit bytes (Python's default,
 * 131072). Unlike Python's default dialect it is strict: a quote inside an
 * unquoted field, text after a closing quote, and an unterminated quoted
 * field are errors, not guesses. */
#include "csv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "buf.h"
#include "json_string.h"
#include "luaclass.h"
#define QH_CSV_WANT_LIBCSV  /* libcsv's csv.h, not ours: see csv.h */
#include <csv.h>

#define CHUNK_SIZE    (64 * 1024)
#define READER_MT     "qhost.csvreader"
#define DEFAULT_FIELD_LIMIT 131072

/* libcsv 3.0.3's parser states (private to libcsv.c, but pstate is in the
 * public struct). */
#define LIBCSV_ROW_NOT_BEGUN          0
#define LIBCSV_FIELD_BEGUN            2
#define LIBCSV_FIELD_MIGHT_HAVE_ENDED 3

typedef struct field_ref {
    size_t off, len;   /* into reader.bytes */
} field_ref;

typedef struct row_ref {
    size_t first, n;   /* into reader.fields */
    long line;
} row_ref;

typedef struct csv_reader {
    int fd;                  /* -1 once closed */
    char *path;              /* as given, for messages; freed by __gc */
    struct csv_parser parser;
    int parser_ready;
    unsigned char *chunk;    /* CHUNK_SIZE bytes read from the file */
    size_t chunk_len, chunk_pos;
    int at_start;            /* a BOM may still come */
    int finished;            /* EOF reached and libcsv finalised */
    long line;               /* physical line of the next unparsed byte */
    int prev_cr;             /* the last segment ended with CR */
    long seg_line;           /* line of the bytes libcsv is parsing now */
    long row_line;           /* where the row being assembled began, or 0 */
    size_t field_limit;
    long too_big_line;       /* a completed field exceeded the limit */
    int oom;                 /* a callback could not grow its arrays */
    int stop;                /* oom or too_big_line: callbacks ignore the rest */
    /* Completed rows not yet handed to Lua, then the partial row. */
    qh_buf bytes;
    field_ref *fields;
    size_t nfields, capfields;
    row_ref *rows;
    size_t nrows, caprows, head;
    size_t partial_first;    /* first field of the row being assembled */
    int failed;              /* sticky: every later read_row returns err */
    char err[4096 + 256];
    qh_buf json;             /* row_json / read_json output */
    qh_buf header_keys;      /* read_json: the header as `"name":` prefixes */
    size_t *header_ends;     /* end of each prefix in header_keys */
    size_t nheader;
    const void *header_id;   /* the header table they were made from... */
    int header_ref;          /* ...kept alive (a registry ref, 0 for none) so
                                that no other table can take its address */
} csv_reader;

/* ------------------------------------------------------------------------ */
/* libcsv callbacks: record into C arrays only                               */

static void on_field(void *s, size_t len, void *data)
{
    csv_reader *r = data;
    if (r->stop) return;
    if (r->nfields == r->partial_first && r->row_line == 0) r->row_line = r->seg_line;
    if (len > r->field_limit) {
        /* its row must not be handed out */
        r->too_big_line = r->row_line;
        r->stop = 1;
        return;
    }
    if (r->nfields == r->capfields) {
        size_t cap = r->capfields ? r->capfields * 2 : 64;
        field_ref *f = realloc(r->fields, cap * sizeof *f);
        if (!f) { r->oom = r->stop = 1; return; }
        r->fields = f;
        r->capfields = cap;
    }
    if (qh_buf_reserve(&r->bytes, len) != 0) { r->oom = r->stop = 1; return; }
    if (len) memcpy(r->bytes.data + r->bytes.len, s, len);
    r->fields[r->nfields++] = (field_ref){ r->bytes.len, len };
    r->bytes.len += len;
}

static void on_row(int c, void *data)
{
    csv_reader *r = data;
    (void)c;
    if (r->stop) return;
    if (r->nrows == r->caprows) {
        size_t cap = r->caprows ? r->caprows * 2 : 16;
        row_ref *rows = realloc(r->rows, cap * sizeof *rows);
        if (!rows) { r->oom = r->stop = 1; return; }
        r->rows = rows;
        r->caprows = cap;
    }
    r->rows[r->nrows++] = (row_ref){ r->partial_first, r->nfields - r->partial_first,
                                     r->row_line ? r->row_line : r->seg_line };
    r->partial_first = r->nfields;
    r->row_line = 0;
}

/* Python's csv keeps spaces around fields; libcsv trims them unless told
 * that nothing is a space. */
static int no_spaces(unsigned char c)
{
    (void)c;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

static void set_err(csv_reader *r, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(csv_reader *r, long line, const char *fmt, ...)
{
    if (r->failed) return;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (line > 0) snprintf(r->err, sizeof r->err, "%s:%ld: %s", r->path, line, what);
    else snprintf(r->err, sizeof r->err, "%s: %s", r->path, what);
    r->failed = 1;
}

/* Reads into the chunk after chunk_len. Returns bytes read, 0 at EOF, -1 on
 * error (r->err set). */
static ssize_t read_more(csv_reader *r)
{
    for (;;) {
        ssize_t n = read(r->fd, r->chunk + r->chunk_len, CHUNK_SIZE - r->chunk_len);
        if (n >= 0) {
            r->chunk_len += (size_t)n;
            return n;
        }
        if (errno != EINTR) {
            set_err(r, 0, "read error: %s", strerror(errno));
            return -1;
        }
    }
}

/* Refills the (fully parsed) chunk. Returns 1 with data, 0 at EOF, -1. */
static int refill(csv_reader *r)
{
    r->chunk_pos = r->chunk_len = 0;
    ssize_t n = read_more(r);
    if (n <= 0) return (int)n;
    if (r->at_start) {
        /* A UTF-8 BOM (as Excel writes) is not part of the first header. */
        while (r->chunk_len < 3 && (n = read_more(r)) > 0) {}
        if (n < 0) return -1;
        if (r->chunk_len >= 3 && memcmp(r->chunk, "\xEF\xBB\xBF", 3) == 0) r->chunk_pos = 3;
        r->at_start = 0;
        if (r->chunk_pos == r->chunk_len) return refill(r);
    }
    return 1;
}

/* Python's csv caps fields (field_size_limit); here it also bounds the
 * memory an unterminated quote can take before EOF proves it wrong. Checks
 * completed fields (on_field noted them) and the one libcsv is assembling,
 * whose buffer still holds a closing quote in FIELD_MIGHT_HAVE_ENDED. */
static int field_limit_exceeded(csv_reader *r)
{
    size_t pending = r->parser.entry_pos;
    if (r->parser.pstate == LIBCSV_FIELD_MIGHT_HAVE_ENDED && pending > 0) pending--;
    if (!r->too_big_line && pending <= r->field_limit) return 0;
    set_err(r, r->too_big_line ? r->too_big_line : r->row_line,
            "malformed CSV: field larger than field limit (%zu)", r->field_limit);
    return 1;
}

/* Parses the next physical line of the chunk (or the rest of the chunk if
 * the line continues in the next one). */
static void parse_segment(csv_reader *r)
{
    const unsigned char *p = r->chunk + r->chunk_pos;
    size_t avail = r->chunk_len - r->chunk_pos;
    const unsigned char *nl = memchr(p, '\n', avail);
    const unsigned char *cr = memchr(p, '\r', nl ? (size_t)(nl - p) : avail);
    const unsigned char *term = cr ? cr : nl;
    size_t len = term ? (size_t)(term - p) + 1 : avail;

    r->seg_line = r->line;
    size_t done = csv_parse(&r->parser, p, len, on_field, on_row, r);
    if (r->oom) {
        set_err(r, 0, "out of memory");
        return;
    }
    if (r->row_line == 0 && r->parser.pstate != LIBCSV_ROW_NOT_BEGUN) r->row_line = r->seg_line;
    /* a big field before a bad quote on the same line is the first error */
    if (r->too_big_line && field_limit_exceeded(r)) return;
    if (done < len) {
        if (csv_error(&r->parser) != CSV_EPARSE) {
            set_err(r, r->seg_line, "%s", csv_strerror(csv_error(&r->parser)));
        } else if (r->parser.pstate == LIBCSV_FIELD_MIGHT_HAVE_ENDED) {
            set_err(r, r->seg_line, "malformed CSV: unexpected character after closing quote");
        } else {
            set_err(r, r->seg_line, "malformed CSV: quote character in unquoted field");
        }
        return;
    }
    if (field_limit_exceeded(r)) return;

    if (term) {
        /* The LF of a CRLF already had its line counted at the CR. */
        if (!(*term == '\n' && r->prev_cr && len == 1)) r->line++;
        r->prev_cr = *term == '\r';
    } else {
        r->prev_cr = 0;
    }
    r->chunk_pos += len;
}

static void finish(csv_reader *r)
{
    r->finished = 1;
    r->seg_line = r->line;
    if (csv_fini(&r->parser, on_field, on_row, r) != 0) {
        set_err(r, r->row_line, "malformed CSV: unterminated quoted field");
        return;
    }
    if (r->oom) set_err(r, 0, "out of memory");
    else field_limit_exceeded(r);
}

/* Drops the rows Lua already has, keeping the partial row. */
static void compact(csv_reader *r)
{
    if (r->nrows == 0) return;
    size_t nkeep = r->nfields - r->partial_first;
    size_t boff = nkeep ? r->fields[r->partial_first].off : r->bytes.len;
    /* data is still NULL while every field so far was empty */
    if (r->bytes.len > boff) memmove(r->bytes.data, r->bytes.data + boff, r->bytes.len - boff);
    r->bytes.len -= boff;
    for (size_t i = 0; i < nkeep; i++) {
        r->fields[i] = r->fields[r->partial_first + i];
        r->fields[i].off -= boff;
    }
    r->nfields = nkeep;
    r->partial_first = 0;
    r->nrows = r->head = 0;
}

/* The next complete row, or NULL at EOF or on error (r->err). */
static const row_ref *next_row(csv_reader *r)
{
    if (r->head == r->nrows) compact(r);
    while (r->head == r->nrows) {
        if (r->failed || r->finished) return NULL;
        if (r->chunk_pos == r->chunk_len) {
            int rc = refill(r);
            if (rc < 0) return NULL;
            if (rc == 0) {
                finish(r);
                continue;
            }
        }
        parse_segment(r);
    }
    return &r->rows[r->head++];
}

/* Releases everything but the path (messages may still need it). */
static void reader_close(csv_reader *r)
{
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    if (r->parser_ready) csv_free(&r->parser);
    r->parser_ready = 0;
    free(r->chunk);
    r->chunk = NULL;
    qh_buf_free(&r->bytes);
    free(r->fields);
    r->fields = NULL;
    free(r->rows);
    r->rows = NULL;
    r->nfields = r->capfields = r->nrows = r->caprows = r->head = r->partial_first = 0;
    qh_buf_free(&r->json);
    qh_buf_free(&r->header_keys);
    free(r->header_ends);
    r->header_ends = NULL;
    r->nheader = 0;
    r->header_id = NULL;
}

/* ------------------------------------------------------------------------ */
/* Lua API                                                                   */

static csv_reader *check_reader(lua_State *L)
{
    return luaL_checkudata(L, 1, READER_MT);
}

static unsigned char opt_char(lua_State *L, int opts, const char *name, unsigned char def)
{
    lua_getfield(L, opts, name);
    unsigned char c = def;
    if (!lua_isnil(L, -1)) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (lua_type(L, -1) != LUA_TSTRING || n != 1 || *s == '\r' || *s == '\n')
            luaL_error(L, "csvreader.open: %s must be a one-character string other than a newline", name);
        c = (unsigned char)*s;
    }
    lua_pop(L, 1);
    return c;
}

/* csvreader.open(path, opts) -> reader | nil, err */
static int l_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    unsigned char delim = ',', quote = '"';
    size_t limit = DEFAULT_FIELD_LIMIT;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        delim = opt_char(L, 2, "delimiter", delim);
        quote = opt_char(L, 2, "quotechar", quote);
        lua_getfield(L, 2, "field_size_limit");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 1))
                return luaL_error(L, "csvreader.open: field_size_limit must be a positive number");
            lua_Number n = lua_tonumber(L, -1);
            limit = n >= (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)n;
        }
        lua_pop(L, 1);
        if (delim == quote)
            return luaL_error(L, "csvreader.open: delimiter and quotechar must differ");
    }

    /* The userdata first, so that __gc releases whatever follows. */
    csv_reader *r = qh_luaclass_new(L, READER_MT, sizeof *r);
    r->fd = -1;

    r->path = strdup(path);
    r->chunk = malloc(CHUNK_SIZE);
    if (!r->path || !r->chunk || csv_init(&r->parser, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return luaL_error(L, "csvreader.open: out of memory");
    r->parser_ready = 1;
    csv_set_delim(&r->parser, delim);
    csv_set_quote(&r->parser, quote);
    csv_set_space_func(&r->parser, no_spaces);
    /* libcsv grows its field buffer by this step, not by doubling. */
    csv_set_blk_size(&r->parser, 16 * 1024);
    r->field_limit = limit;
    r->at_start = 1;
    r->line = 1;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        int e = fd < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : errno;
        if (fd >= 0) close(fd);
        reader_close(r);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(e));
        return 2;
    }
    r->fd = fd;
    return 1;
}

/* reader:read_row() -> fields, line | nil (EOF) | nil, err */
static int l_read_row(lua_State *L)
{
    csv_reader *r = check_reader(L);
    if (r->fd < 0) return luaL_error(L, "csvreader %s: read_row after close", r->path);
    const row_ref *row = next_row(r);
    if (!row) {
        lua_pushnil(L);
        if (!r->failed) return 1;
        lua_pushstring(L, r->err);
        return 2;
    }
    lua_createtable(L, (int)row->n, 0);
    for (size_t i = 0; i < row->n; i++) {
        const field_ref *f = &r->fields[row->first + i];
        lua_pushlstring(L, r->bytes.data ? r->bytes.data + f->off : "", f->len);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_pushinteger(L, (lua_Integer)row->line);
    return 2;
}

static void drop_header_ref(lua_State *L, csv_reader *r)
{
    if (r->header_ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, r->header_ref);
    r->header_ref = 0;
}

/* reader:close(): idempotent; __gc does the same. */
static int l_close(lua_State *L)
{
    csv_reader *r = check_reader(L);
    drop_header_ref(L, r);
    reader_close(r);
    return 0;
}

static int l_gc(lua_State *L)
{
    csv_reader *r = check_reader(L);
    drop_header_ref(L, r);
    reader_close(r);
    free(r->path);
    r->path = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    csv_reader *r = check_reader(L);
    lua_pushfstring(L, "csvreader(%s%s)", r->path ? r->path : "?", r->fd < 0 ? ", closed" : "");
    return 1;
}

static int push_row_err(lua_State *L, csv_reader *r, long line, const char *msg)
{
    lua_pushnil(L);
    if (line > 0) lua_pushfstring(L, "%s:%d: %s", r->path, (int)line, msg);
    else lua_pushfstring(L, "%s: %s", r->path, msg);
    return 2;
}

/* Makes r->header_keys hold the header table at idx as escaped `"name":`
 * prefixes, which row_json and read_json put before each field; they are
 * kept while the same header table is given (the common case: every row of
 * a file), so a header table must not change between rows. Returns 0, or pushes nil, err for a header that is not UTF-8
 * and returns 2; raises for a name that is not a string. */
static int use_header(lua_State *L, csv_reader *r, int idx, const char *fn)
{
    if (r->header_id == lua_topointer(L, idx)) return 0;
    size_t m = lua_objlen(L, idx);
    r->header_keys.len = 0;
    r->nheader = 0;
    r->header_id = NULL;
    size_t *ends = realloc(r->header_ends, (m ? m : 1) * sizeof *ends);
    if (!ends) return luaL_error(L, "%s: out of memory", fn);
    r->header_ends = ends;
    for (size_t i = 1; i <= m; i++) {
        size_t klen;
        lua_rawgeti(L, idx, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "%s: header[%d] is a %s, expected a string", fn, (int)i,
                              luaL_typename(L, -1));
        const char *k = lua_tolstring(L, -1, &klen);
        int rc = qh_json_append_string(&r->header_keys, k, klen);
        lua_pop(L, 1);
        if (rc == QH_JSON_EUTF8) {
            /* The header's fault, not a row's: no line number. */
            char msg[64];
            snprintf(msg, sizeof msg, "invalid UTF-8 in header column %d", (int)i);
            return push_row_err(L, r, 0, msg);
        }
        if (rc != QH_JSON_OK || qh_buf_put(&r->header_keys, ":", 1) != 0)
            return luaL_error(L, "%s: out of memory", fn);
        r->header_ends[r->nheader++] = r->header_keys.len;
    }
    if (r->header_ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, r->header_ref);
    lua_pushvalue(L, idx);
    r->header_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r->header_id = lua_topointer(L, idx);
    return 0;
}

/* Appends field i (0-based) of the row being written: its header prefix,
 * then the value, or null when data is NULL (a missing field). Returns
 * QH_JSON_OK, QH_JSON_EUTF8 (the value) or QH_JSON_ENOMEM. */
static int put_member(csv_reader *r, size_t i, const char *data, size_t len)
{
    qh_buf *b = &r->json;
    size_t kstart = i ? r->header_ends[i - 1] : 0;
    if ((i > 0 && qh_buf_put(b, ",", 1) != 0) ||
        qh_buf_put(b, r->header_keys.data + kstart, r->header_ends[i] - kstart) != 0)
        return QH_JSON_ENOMEM;
    if (!data) return qh_buf_put(b, "null", 4) == 0 ? QH_JSON_OK : QH_JSON_ENOMEM;  /* DictReader's None */
    return qh_json_append_string(b, data, len);
}

/* Both JSON ways check, in this order, so that they fail alike: the row
 * (end of file, malformed CSV), the header, the number of fields, then each
 * field. */

/* reader:row_json(header, fields, line) -> string | nil, err: the JSON
 * object header[i] -> fields[i] in header order, null for missing fields
 * (Python's DictReader gives None). `line` (optional) only goes into error
 * messages. Works after close. */
static int l_row_json(lua_State *L)
{
    csv_reader *r = check_reader(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    long line = (long)luaL_optinteger(L, 4, 0);
    int rc = use_header(L, r, 2, "row_json");
    if (rc) return rc;
    size_t n = lua_objlen(L, 3);
    char msg[128];
    if (n > r->nheader) {
        snprintf(msg, sizeof msg, "row has %zu fields, header has %zu", n, r->nheader);
        return push_row_err(L, r, line, msg);
    }
    qh_buf *b = &r->json;
    b->len = 0;
    if (qh_buf_put(b, "{", 1) != 0) goto nomem;
    for (size_t i = 0; i < r->nheader; i++) {
        const char *v = NULL;
        size_t vlen = 0;
        lua_rawgeti(L, 3, (int)i + 1);
        if (i < n) {
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "row_json: fields[%d] is a %s, expected a string", (int)i + 1,
                                  luaL_typename(L, -1));
            v = lua_tolstring(L, -1, &vlen);
        }
        rc = put_member(r, i, v, vlen);
        lua_pop(L, 1);
        if (rc == QH_JSON_EUTF8) {
            snprintf(msg, sizeof msg, "invalid UTF-8 in field %zu", i + 1);
            return push_row_err(L, r, line, msg);
        }
        if (rc != QH_JSON_OK) goto nomem;
    }
    if (qh_buf_put(b, "}", 1) != 0) goto nomem;
    lua_pushlstring(L, b->data, b->len);
    return 1;
nomem:
    return luaL_error(L, "row_json: out of memory");
}

/* row_to_json's result for a fault of the row's own (apart from
 * json_string.h's QH_JSON_OK and QH_JSON_ENOMEM). */
enum { ROW_FAULT = 1 };

/* Writes the JSON text of row (use_header's header) into r->json. Returns
 * QH_JSON_OK, QH_JSON_ENOMEM, or ROW_FAULT with what is wrong in msg (more
 * fields than the header names, a field not UTF-8). */
static int row_to_json(csv_reader *r, const row_ref *row, char *msg, size_t msglen)
{
    if (row->n > r->nheader) {
        snprintf(msg, msglen, "row has %zu fields, header has %zu", row->n, r->nheader);
        return ROW_FAULT;
    }
    qh_buf *b = &r->json;
    b->len = 0;
    if (qh_buf_put(b, "{", 1) != 0) return QH_JSON_ENOMEM;
    for (size_t i = 0; i < r->nheader; i++) {
        const field_ref *f = i < row->n ? &r->fields[row->first + i] : NULL;
        int rc = put_member(r, i, f ? (r->bytes.data ? r->bytes.data + f->off : "") : NULL, f ? f->len : 0);
        if (rc == QH_JSON_EUTF8) {
            snprintf(msg, msglen, "invalid UTF-8 in field %zu", i + 1);
            return ROW_FAULT;
        }
        if (rc != QH_JSON_OK) return QH_JSON_ENOMEM;
    }
    return qh_buf_put(b, "}", 1) == 0 ? QH_JSON_OK : QH_JSON_ENOMEM;
}

/* reader:read_json(header) -> json, line | nil (EOF) | nil, err: the next
 * row straight as the JSON text row_json(header, fields) would make of it,
 * without its fields ever becoming Lua strings. */
static int l_read_json(lua_State *L)
{
    csv_reader *r = check_reader(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (r->fd < 0) return luaL_error(L, "csvreader %s: read_json after close", r->path);
    /* The row first: like read_row then row_json, the end of the file or a
     * malformed one comes before anything about the header. */
    const row_ref *row = next_row(r);
    if (!row) {
        lua_pushnil(L);
        if (!r->failed) return 1;
        lua_pushstring(L, r->err);
        return 2;
    }
    int rc = use_header(L, r, 2, "read_json");
    if (rc) return rc;
    char msg[128];
    rc = row_to_json(r, row, msg, sizeof msg);
    if (rc == ROW_FAULT) return push_row_err(L, r, row->line, msg);
    if (rc != QH_JSON_OK) return luaL_error(L, "read_json: out of memory");
    lua_pushlstring(L, r->json.data, r->json.len);
    lua_pushinteger(L, (lua_Integer)row->line);
    return 2;
}

/* reader:set_header(header) -> true | nil, err: the header the FFI's
 * qh_ffi_csv_next_json writes rows by (as read_json's). */
static int l_set_header(lua_State *L)
{
    csv_reader *r = check_reader(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int rc = use_header(L, r, 2, "set_header");
    if (rc) return rc;
    lua_pushboolean(L, 1);
    return 1;
}

/* reader:ptr() -> the reader as a light userdata, for the FFI calls below
 * (valid while the reader object lives). */
static int l_ptr(lua_State *L)
{
    lua_pushlightuserdata(L, check_reader(L));
    return 1;
}

/* For the FFI (a CSVSource's run loop, compiled whole by the JIT): the
 * next row as read_json's text, in the reader's buffer (valid until the
 * next call), its length in *len; NULL at the end of the file or on an
 * error, which qh_ffi_csv_error then returns (a row's fault is sticky here:
 * every later call returns NULL). No Lua string is made per row. */
const char *qh_ffi_csv_next_json(csv_reader *r, size_t *len)
{
    if (r->failed) return NULL;
    if (r->fd < 0) {
        set_err(r, 0, "read after close");
        return NULL;
    }
    if (!r->header_id) {
        set_err(r, 0, "no header set (set_header)");
        return NULL;
    }
    const row_ref *row = next_row(r);
    if (!row) return NULL;
    char msg[128];
    int rc = row_to_json(r, row, msg, sizeof msg);
    if (rc == ROW_FAULT) {
        set_err(r, row->line, "%s", msg);
        return NULL;
    }
    if (rc != QH_JSON_OK) {
        set_err(r, row->line, "out of memory");
        return NULL;
    }
    *len = r->json.len;
    return r->json.data;
}

/* Why qh_ffi_csv_next_json returned NULL: the error, or NULL at the end. */
const char *qh_ffi_csv_error(const csv_reader *r)
{
    return r->failed ? r->err : NULL;
}

static const luaL_Reg reader_methods[] = {
    { "read_row", l_read_row },
    { "read_json", l_read_json },
    { "set_header", l_set_header },
    { "ptr", l_ptr },
    { "row_json", l_row_json },
    { "close", l_close },
    { NULL, NULL },
};

static const luaL_Reg reader_metamethods[] = {
    { "__gc", l_gc },
    { "__tostring", l_tostring },
    { NULL, NULL },
};

int qh_csv_open(lua_State *L)
{
    qh_luaclass_register_meta(L, READER_MT, reader_methods, reader_metamethods);
    lua_newtable(L);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "open");
    return 1;
}
