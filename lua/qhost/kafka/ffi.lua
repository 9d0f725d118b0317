-- qhost.kafka.ffi: the host's flat C ABI for the per-message path (host/kafka.h;
-- keep the two in step). Everything here is called through LuaJIT's FFI so
-- the consume -> Lua -> produce loop stays inside compiled traces.
local ffi = require("ffi")

ffi.cdef[[
typedef struct qh_producer qh_producer;
typedef struct qh_consumer qh_consumer;
typedef struct qh_msg {
    const char *topic;
    const char *key;
    const char *value;
    size_t key_len;
    size_t value_len;
    int64_t offset;
    int64_t timestamp;
    int32_t partition;
    int32_t timestamp_type;
    int32_t err;
    int32_t header_count;
} qh_msg;

int qh_ffi_consumer_poll(qh_consumer *c, int max, int timeout_ms, qh_msg **out);
int qh_ffi_msg_header(qh_consumer *c, int i, int idx, const char **name,
                      const char **value, size_t *len);
const char *qh_ffi_msg_errstr(qh_consumer *c, int i);
int qh_ffi_produce(qh_producer *p, const char *topic, int32_t partition,
                   const char *key, size_t key_len, const char *value, size_t value_len,
                   int64_t timestamp, int header_count, const char **header_names,
                   const char **header_values, const size_t *header_value_lens);
const char *qh_ffi_producer_errstr(qh_producer *p);
int qh_ffi_producer_topic(qh_producer *p, const char *topic);
int qh_ffi_producer_poll(qh_producer *p, int timeout_ms);
int qh_ffi_producer_failures(qh_producer *p);
int qh_ffi_producer_take_failures(qh_producer *p, char *buf, size_t buflen);
int qh_ffi_stop_requested(void);
]]

return ffi.C
