#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""TLS server on loopback for the TLS tests: HTTP/1.1 keep-alive, answers GET /N with N bytes of body.

Writes one JSON line per connection to --out: the client's port and the exact plaintext bytes it
received and sent (hex), so a test can compare them with what proctap saw.
"""
import argparse, json, socket, ssl, threading

def serve(conn, peer, out, lock):
    received, sent = bytearray(), bytearray()
    buf = b''
    try:
        while True:
            while b'\r\n\r\n' not in buf:
                d = conn.recv(65536)
                if not d:
                    raise EOFError
                received += d
                buf += d
            head, buf = buf.split(b'\r\n\r\n', 1)
            path = head.split(b' ')[1].decode()
            n = int(path.strip('/') or '0')
            body = (b'0123456789abcdef' * (n // 16 + 1))[:n]
            reply = b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % n + body
            conn.sendall(reply)
            sent += reply
    except (EOFError, ConnectionError, ssl.SSLError):
        pass
    finally:
        conn.close()
        with lock, open(out, 'a') as f:
            f.write(json.dumps({'peerPort': peer[1], 'received': received.hex(), 'sent': sent.hex()}) + '\n')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ls = socket.create_server(('127.0.0.1', a.port))
    lock = threading.Lock()
    print('ready', flush=True)
    while True:
        c, peer = ls.accept()
        try:
            tc = ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, ConnectionError):
            c.close()
            continue
        threading.Thread(target=serve, args=(tc, peer, a.out, lock), daemon=True).start()

main()
