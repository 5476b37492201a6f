#include "config.h"

/*
 * origin_ws.c - WebSocket (RFC 6455) echo for weir-origin.
 *
 * origin.c validates the upgrade request and owns the connection; this file
 * computes Sec-WebSocket-Accept and echoes frames from one evbuffer to
 * another: text, binary and continuation frames go back unmasked with the
 * same FIN bit, opcode and payload as they stream (a frame is never held
 * whole, so partial reads and huge frames are fine); ping is answered with
 * pong carrying the same payload; close is answered with close (same status
 * code). Protocol errors (unmasked client frame, RSV bits, unknown opcode,
 * fragmented or oversized control frame, bad continuation) queue a close
 * with 1002. It never touches a socket.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include <openssl/evp.h>

#include "origin.h" /* the interface: origin_ws_*, ORIGIN_WS_AGAIN, ORIGIN_WS_CLOSE */

struct origin_ws {
    bool in_frame;   /* a frame header was consumed, payload pending */
    bool in_message; /* a fragmented data message is open */
    uint8_t opcode;
    uint8_t mask[4];
    unsigned mask_off;
    uint64_t left; /* payload bytes still to read */
    uint8_t ctl[125];
    size_t ctl_len;
};

/* A zeroed state for one connection, or NULL. Owned by the caller. */
struct origin_ws *origin_ws_new(void)
{
    return calloc(1, sizeof(struct origin_ws));
}

void origin_ws_free(struct origin_ws *ws)
{
    free(ws);
}

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: out gets 28 characters and a
 * NUL. Returns 0, or -1 when the key is not base64 of 16 bytes. */
int origin_ws_accept(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char kb[24 + sizeof(guid)], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (len != 24 || key[22] != '=' || key[23] != '=')
        return -1;
    for (size_t i = 0; i < 22; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
              ch == '/'))
            return -1;
    }
    memcpy(kb, key, 24);
    memcpy(kb + 24, guid, sizeof(guid) - 1);
    if (EVP_Digest(kb, 24 + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return 0;
}

static void ws_frame_head(struct evbuffer *out, bool fin, unsigned op, uint64_t len)
{
    uint8_t h[10];
    size_t n = 2;

    h[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    evbuffer_add(out, h, n);
}

/* Queue a close frame (code 0: without a status code). */
static int ws_close(struct evbuffer *out, unsigned code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};

    ws_frame_head(out, true, 8, code ? 2 : 0);
    if (code)
        evbuffer_add(out, p, 2);
    return ORIGIN_WS_CLOSE;
}

/* Consume one frame header if complete. Returns 1 when consumed, 0 when
 * more bytes are needed, ORIGIN_WS_CLOSE after a protocol error. */
static int ws_frame_start(struct origin_ws *ws, struct evbuffer *in, struct evbuffer *out)
{
    size_t avail = evbuffer_get_length(in), hn, need = 2;
    uint8_t h[14];
    uint64_t len;
    unsigned op;
    bool fin, bad;

    if (avail < 2)
        return 0;
    hn = avail < sizeof(h) ? avail : sizeof(h);
    evbuffer_copyout(in, h, hn);
    op = h[0] & 0x0f;
    fin = (h[0] & 0x80) != 0;
    len = h[1] & 0x7f;
    if (op == 0)
        bad = !ws->in_message;
    else if (op == 1 || op == 2)
        bad = ws->in_message;
    else if (op >= 8 && op <= 10)
        bad = !fin || len > 125;
    else
        bad = true;
    if (bad || (h[0] & 0x70) || !(h[1] & 0x80)) /* judged before waiting for the rest */
        return ws_close(out, 1002);
    if (len == 126)
        need = 4;
    else if (len == 127)
        need = 10;
    need += 4; /* the masking key */
    if (hn < need)
        return 0;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        if (len >> 63)
            return ws_close(out, 1002);
    }
    memcpy(ws->mask, h + need - 4, 4);
    evbuffer_drain(in, need);
    ws->in_frame = true;
    ws->opcode = (uint8_t)op;
    ws->left = len;
    ws->mask_off = 0;
    ws->ctl_len = 0;
    if (op < 8) { /* data frames are echoed as their payload streams */
        ws_frame_head(out, fin, op, len);
        ws->in_message = !fin;
    }
    return 1;
}

static void ws_unmask(struct origin_ws *ws, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= ws->mask[(ws->mask_off + i) & 3];
    ws->mask_off = (unsigned)((ws->mask_off + n) & 3);
}

/* Echo what in holds to out, stopping when out reaches out_high (call again
 * once it drained) or in runs dry. Returns ORIGIN_WS_AGAIN or
 * ORIGIN_WS_CLOSE (the caller then stops reading and closes after out is
 * written). */
int origin_ws_echo(struct origin_ws *ws, struct evbuffer *in, struct evbuffer *out, size_t out_high)
{
    uint8_t buf[16384];

    for (;;) {
        if (evbuffer_get_length(out) >= out_high)
            return ORIGIN_WS_AGAIN;
        if (!ws->in_frame) {
            int rc = ws_frame_start(ws, in, out);
            if (rc != 1)
                return rc;
        }
        while (ws->left > 0) {
            size_t n = evbuffer_get_length(in);
            if (n == 0)
                return ORIGIN_WS_AGAIN;
            if (n > ws->left)
                n = (size_t)ws->left;
            if (ws->opcode >= 8) {
                evbuffer_remove(in, ws->ctl + ws->ctl_len, n);
                ws_unmask(ws, ws->ctl + ws->ctl_len, n);
                ws->ctl_len += n;
            } else {
                if (n > sizeof(buf))
                    n = sizeof(buf);
                evbuffer_remove(in, buf, n);
                ws_unmask(ws, buf, n);
                evbuffer_add(out, buf, n);
            }
            ws->left -= n;
            if (evbuffer_get_length(out) >= out_high)
                return ORIGIN_WS_AGAIN;
        }
        ws->in_frame = false;
        if (ws->opcode == 9) { /* ping: pong with the same payload */
            ws_frame_head(out, true, 10, ws->ctl_len);
            evbuffer_add(out, ws->ctl, ws->ctl_len);
        } else if (ws->opcode == 8) {
            if (ws->ctl_len == 1)
                return ws_close(out, 1002);
            return ws_close(out, ws->ctl_len >= 2 ? (unsigned)ws->ctl[0] << 8 | ws->ctl[1] : 0);
        }
    }
}
