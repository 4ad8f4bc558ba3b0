#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""TLS client for the TLS tests: one connection, GET /N for every N given, HTTP/1.1 keep-alive.

Prints one JSON line: its local port and the exact plaintext bytes it sent and received (hex).
"""
import json, socket, ssl, sys

def main():
    port, sizes = int(sys.argv[1]), [int(n) for n in sys.argv[2:]]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', port)))
    sent, received = bytearray(), bytearray()
    for n in sizes:
        req = b'GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tls_client\r\n\r\n' % n
        s.sendall(req)
        sent += req
        buf = b''
        while b'\r\n\r\n' not in buf:
            buf += s.recv(65536)
        head, body = buf.split(b'\r\n\r\n', 1)
        length = int([l for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')][0].split(b':')[1])
        while len(body) < length:
            body += s.recv(65536)
        received += head + b'\r\n\r\n' + body
    print(json.dumps({'localPort': s.getsockname()[1], 'sent': sent.hex(), 'received': received.hex()}), flush=True)
    s.close()

main()
