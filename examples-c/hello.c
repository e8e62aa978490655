#include <stdio.h>
#include <rr.h>

int main(int argc, char **argv) {
    rr_config *cfg = NULL; rr_server *srv = NULL; rr_payload *answer; rr_error *err = NULL; size_t clen, blen;
    if (argc != 2) return fprintf(stderr, "usage: hello WORKER-COMMAND\n"), 2;
    if (rr_config_new(argv[1], "pipes", &cfg, &err)) goto failed;
    rr_config_set_num_workers(cfg, 2);
    if (rr_server_new(cfg, &srv, &err) || rr_server_start(srv, &err) ||
        rr_exec(srv, (const uint8_t *)"hello", 5, (const uint8_t *)"world", 5, &answer, &err)) goto failed;
    const uint8_t *context = rr_payload_context(answer, &clen), *body = rr_payload_body(answer, &blen);
    printf("%.*s %.*s\n", (int)clen, (const char *)context, (int)blen, (const char *)body);
    rr_payload_free(answer);
    rr_server_free(srv);
    rr_config_free(cfg);
    return 0;
failed:
    fprintf(stderr, "hello: %s\n", rr_error_message(err));
    rr_error_free(err);
    rr_server_free(srv);
    rr_config_free(cfg);
    return 1;
}
