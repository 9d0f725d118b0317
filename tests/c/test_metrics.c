/* test_metrics.c: tests of host/metrics.c, the metrics, health and
 * readiness endpoint: what /metrics, /health and /ready answer as the Lua
 * thread publishes, beats and sets ready (asked over real TCP connections
 * from this thread, while the server's own thread answers), other paths and
 * methods, the start-up errors (a port in use, out of range), and the Lua
 * module. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "helpers.h"
#include "metrics.h"

/* One HTTP/1.0 request to 127.0.0.1:port; the status code (-1 when the
 * connection failed), the whole response in out. */
static int http(int port, const char *method, const char *path, char *out, size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = { 10, 0 };   /* a hung server fails the test, not the run */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) goto done;
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
    if (write(fd, req, (size_t)n) != n) goto done;
    size_t used = 0;
    ssize_t got;
    while (used + 1 < outlen && (got = read(fd, out + used, outlen - 1 - used)) > 0) used += (size_t)got;
    out[used] = '\0';
    sscanf(out, "HTTP/1.%*d %d", &status);
done:
    close(fd);
    return status;
}

static const char *body_of(const char *response)
{
    const char *b = strstr(response, "\r\n\r\n");
    return b ? b + 4 : "";
}

static qh_metrics *start_any(void)
{
    char err[256];
    qh_metrics *m = qh_metrics_start(0, err, sizeof err);
    if (!m) fprintf(stderr, "%s: %s\n", check_current_name, err);
    CHECK(m != NULL);
    return m;
}

TEST(metrics_answers_the_last_published_text)
{
    qh_metrics *m = start_any();
    if (!m) return;
    int port = qh_metrics_port(m);
    CHECK(port > 0);
    char resp[4096];
    CHECK_EQ_INT(http(port, "GET", "/metrics", resp, sizeof resp), 200);
    CHECK_EQ_STR(body_of(resp), "");
    const char *text = "# TYPE qhost_x counter\nqhost_x 1\n";
    CHECK_EQ_INT(qh_metrics_publish(m, text, strlen(text)), 0);
    CHECK_EQ_INT(http(port, "GET", "/metrics", resp, sizeof resp), 200);
    CHECK_EQ_STR(body_of(resp), text);
    CHECK(strstr(resp, "Content-Type: text/plain; version=0.0.4") != NULL);
    /* The text is a copy: the caller's buffer may change afterwards. */
    char buf[] = "qhost_x 2\n";
    qh_metrics_publish(m, buf, strlen(buf));
    buf[8] = '9';
    CHECK_EQ_INT(http(port, "GET", "/metrics", resp, sizeof resp), 200);
    CHECK_EQ_STR(body_of(resp), "qhost_x 2\n");
    /* HEAD: the headers alone. */
    CHECK_EQ_INT(http(port, "HEAD", "/metrics", resp, sizeof resp), 200);
    CHECK_EQ_STR(body_of(resp), "");
    qh_metrics_close(m);
}

TEST(health_follows_the_heartbeat)
{
    qh_metrics *m = start_any();
    if (!m) return;
    int port = qh_metrics_port(m);
    char resp[4096];
    CHECK_EQ_INT(http(port, "GET", "/health", resp, sizeof resp), 503);
    CHECK(strstr(body_of(resp), "has not started") != NULL);
    qh_metrics_beat(m, 60);
    CHECK_EQ_INT(http(port, "GET", "/health", resp, sizeof resp), 200);
    CHECK_EQ_STR(body_of(resp), "ok\n");
    /* A beat with no grace left: stale at once. */
    qh_metrics_beat(m, 0);
    CHECK_EQ_INT(http(port, "GET", "/health", resp, sizeof resp), 503);
    CHECK(strstr(body_of(resp), "last heartbeat was") != NULL);
    qh_metrics_beat(m, 60);
    CHECK_EQ_INT(http(port, "GET", "/health", resp, sizeof resp), 200);
    qh_metrics_close(m);
}

TEST(ready_follows_the_flag_with_its_reason)
{
    qh_metrics *m = start_any();
    if (!m) return;
    int port = qh_metrics_port(m);
    char resp[4096];
    CHECK_EQ_INT(http(port, "GET", "/ready", resp, sizeof resp), 503);
    CHECK_EQ_STR(body_of(resp), "not ready: starting\n");
    qh_metrics_set_ready(m, 0, "recovering state");
    CHECK_EQ_INT(http(port, "GET", "/ready", resp, sizeof resp), 503);
    CHECK_EQ_STR(body_of(resp), "not ready: recovering state\n");
    qh_metrics_set_ready(m, 1, NULL);
    CHECK_EQ_INT(http(port, "GET", "/ready", resp, sizeof resp), 200);
    CHECK_EQ_STR(body_of(resp), "ready\n");
    qh_metrics_close(m);
}

TEST(other_paths_and_methods)
{
    qh_metrics *m = start_any();
    if (!m) return;
    int port = qh_metrics_port(m);
    char resp[4096];
    CHECK_EQ_INT(http(port, "GET", "/nope", resp, sizeof resp), 404);
    CHECK_EQ_INT(http(port, "POST", "/metrics", resp, sizeof resp), 405);
    CHECK_EQ_INT(http(port, "GET", "/", resp, sizeof resp), 200);
    qh_metrics_close(m);
}

TEST(a_port_in_use_is_an_error_naming_it_and_why)
{
    qh_metrics *m = start_any();
    if (!m) return;
    int port = qh_metrics_port(m);
    char err[256] = "", want[64];
    qh_metrics *again = qh_metrics_start(port, err, sizeof err);
    CHECK(again == NULL);
    snprintf(want, sizeof want, "cannot listen on port %d: ", port);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    CHECK(strstr(err, strerror(EADDRINUSE)) != NULL);
    qh_metrics_close(again);
    /* The first one still serves. */
    char resp[1024];
    CHECK_EQ_INT(http(port, "GET", "/metrics", resp, sizeof resp), 200);
    qh_metrics_close(m);
}

TEST(out_of_range_ports)
{
    char err[256];
    CHECK(qh_metrics_start(-1, err, sizeof err) == NULL);
    CHECK_EQ_STR(err, "port -1 is out of range (1-65535)");
    CHECK(qh_metrics_start(65536, err, sizeof err) == NULL);
    CHECK_EQ_STR(err, "port 65536 is out of range (1-65535)");
    qh_metrics_close(NULL);
}

TEST(lua_module)
{
    lua_State *L = th_lua_new("metrics", qh_metrics_open);
    CHECK_EQ_STR(th_run(L, "return metrics.start(70000)"), "nil|port 70000 is out of range (1-65535)");
    CHECK_EQ_STR(th_run(L, "return metrics.start(80.5)"), "nil|port 80.5 is out of range (1-65535)");
    CHECK_EQ_STR(th_run(L, "server = metrics.start(0); return server:port() > 0"), "true");
    int port = (int)(th_run_n(L, "return server:port()") == 1 ? lua_tointeger(L, 1) : 0);
    lua_settop(L, 0);
    th_run(L, "server:publish('qhost_y 3\\n'); server:beat(60); server:set_ready(true)");
    char resp[4096];
    CHECK_EQ_INT(http(port, "GET", "/metrics", resp, sizeof resp), 200);
    CHECK_EQ_STR(body_of(resp), "qhost_y 3\n");
    CHECK_EQ_INT(http(port, "GET", "/health", resp, sizeof resp), 200);
    CHECK_EQ_INT(http(port, "GET", "/ready", resp, sizeof resp), 200);
    th_run(L, "server:set_ready(false, 'assigning partitions')");
    CHECK_EQ_INT(http(port, "GET", "/ready", resp, sizeof resp), 503);
    CHECK_EQ_STR(body_of(resp), "not ready: assigning partitions\n");
    char code[128];
    snprintf(code, sizeof code, "local s, err = metrics.start(%d); return s, err", port);
    char want[128];
    snprintf(want, sizeof want, "nil|cannot listen on port %d: %s", port, strerror(EADDRINUSE));
    CHECK_EQ_STR(th_run(L, code), want);
    CHECK_EQ_STR(th_run(L, "server:close(); server:close(); return pcall(server.port, server)"),
                 "false|the metrics server is closed");
    /* Closed: the port is free again. */
    CHECK_EQ_INT(http(port, "GET", "/metrics", resp, sizeof resp), -1);
    lua_close(L);
}

int main(void)
{
    RUN(metrics_answers_the_last_published_text);
    RUN(health_follows_the_heartbeat);
    RUN(ready_follows_the_flag_with_its_reason);
    RUN(other_paths_and_methods);
    RUN(a_port_in_use_is_an_error_naming_it_and_why);
    RUN(out_of_range_ports);
    RUN(lua_module);
    return check_summary();
}
