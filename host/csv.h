/* csv.h: the `qhost.csvreader` Lua module: a pull reader that hands a CSV
 * file to Lua one record at a time (RFC 4180 quoting, strict about malformed
 * input, constant memory for any file size, physical line numbers for
 * messages), and the row-to-JSON step the CSV source runs per row.
 * Uses: libcsv 3.0.3 (strict mode) for parsing, POSIX read(2), buf.h and
 * json_string.h's JSON string escaper (the one the JSON encoder uses),
 * luaclass.h for the reader class. */
/* libcsv's header is also called csv.h. csv.c includes it as <csv.h> with
 * QH_CSV_WANT_LIBCSV defined; when host/ is on the -I path that finds this
 * file instead, so pass the request on to the next csv.h in the path. */
#if defined(QH_CSV_WANT_LIBCSV) && !defined(LIBCSV_H__)
#include_next <csv.h>
#endif

#ifndef QH_CSV_H
#define QH_CSV_H

#include <stddef.h>

#include <lua.h>

/* luaopen-style: pushes the module table. */
int qh_csv_open(lua_State *L);

/* For the FFI (a CSVSource's run loop): the next row's JSON text in the
 * reader's buffer, or NULL at the end or on an error, which
 * qh_ffi_csv_error returns (NULL at the end). See csv.c. */
struct csv_reader;
const char *qh_ffi_csv_next_json(struct csv_reader *r, size_t *len);
const char *qh_ffi_csv_error(const struct csv_reader *r);

#endif
