#!/usr/bin/env python3
"""A TLS HTTP/1.1 server that says how each connection ended, for spec/reliability_spec.lua.

    python3 tls_conn_stub.py CERT KEY PORT_FILE LOG_FILE DELAY PARENT_PID

Answers POST .../actions/purchase/esims {"amount": n} with n SIM cards (any
other request with {"data": []}), kept alive, each answer after DELAY seconds.
Offers only http/1.1 by ALPN. Appends one JSON line per event to LOG_FILE:

    {"seq": 1, "conn": 1, "event": "request", "amount": 2, "key": "<Idempotency-Key>"}
    {"seq": 2, "conn": 1, "event": "end", "how": "close_notify" | "eof" | "error: ..."}

"close_notify" is a peer that shut its TLS session down (what libcurl does when
it cleans up a connection); "eof" a bare TCP close; "error" anything else, such
as a record that fails its MAC (two processes writing one TLS session). The
server stops when process PARENT_PID is gone (checked each second).
"""
import json
import os
import socket
import ssl
import sys
import threading
import time

cert, key, port_file, log_file = sys.argv[1:5]
delay = float(sys.argv[5])
parent = int(sys.argv[6])
lock = threading.Lock()
counter = {"seq": 0, "conn": 0}


def log(event):
    with lock:
        counter["seq"] += 1
        event["seq"] = counter["seq"]
        with open(log_file, "a") as f:
            f.write(json.dumps(event) + "\n")


def card(i):
    return {"record_type": "sim_card", "id": "00000000-0000-4000-8000-%012d" % i, "type": "esim"}


def read_request(tls, buf):
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = tls.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    body, buf = buf[:length], buf[length:]
    return (lines[0], headers, body), buf


def serve(raw, conn_id):
    how = "eof"
    try:
        tls = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
    except (ssl.SSLError, OSError) as e:
        log({"conn": conn_id, "event": "end", "how": "error: handshake: %s" % e})
        raw.close()
        return
    buf = b""
    try:
        while True:
            req, buf = read_request(tls, buf)
            if req is None:
                how = "close_notify"  # recv gave b"" only after the peer's close_notify
                break
            line, headers, body = req
            amount = 0
            if "/actions/purchase/esims" in line:
                try:
                    amount = int(json.loads(body or b"{}").get("amount", 0))
                except ValueError:
                    amount = -1
            log({"conn": conn_id, "event": "request", "line": line, "amount": amount,
                 "key": headers.get("idempotency-key", "")})
            time.sleep(delay)
            out = json.dumps({"data": [card(i) for i in range(amount)]}).encode()
            tls.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(out), out))
    except ssl.SSLEOFError:
        how = "eof"
    except (ssl.SSLError, OSError) as e:
        how = "error: %s" % e
    log({"conn": conn_id, "event": "end", "how": how})
    try:
        raw.close()
    except OSError:
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(64)
server.settimeout(1.0)
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % server.getsockname()[1])
os.rename(port_file + ".tmp", port_file)

while True:
    try:
        raw, _ = server.accept()
    except socket.timeout:
        try:
            os.kill(parent, 0)
        except OSError:
            break
        continue
    with lock:
        counter["conn"] += 1
        conn_id = counter["conn"]
    threading.Thread(target=serve, args=(raw, conn_id), daemon=True).start()
