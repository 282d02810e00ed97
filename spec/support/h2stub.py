#!/usr/bin/python3
"""h2stub.py -- a scriptable HTTP/2 server for the specs (spec/http2_spec.lua).

TLS with ALPN h2 only (libcurl speaks h2 over TLS by default; h2c would need
prior knowledge, which the module does not ask for), on 127.0.0.1. Needs
Debian's python3-h2: run it with /usr/bin/python3.

    h2stub.py --port-file F --log F --cert PEM --key PEM
              [--script FILE | --script-json JSON] [--parent-pid PID] [--idle-timeout S]

The script is a JSON list of steps; each request the server receives whole
(headers and body) takes the next step, whichever connection it came on. Once
the list is used up, every request is answered 202 with {"data":[]}.
A step is an object:

  {"do": "answer", "status": 202, "body": "...",     answer (status default 202,
   "close_after": 0.2, "goaway": true}                body default {"data":[]});
                                                      with close_after: then close the
                                                      connection idle that many seconds
                                                      later, sending GOAWAY(NO_ERROR) first
                                                      when goaway is true (the default)
  {"do": "rst", "code": "INTERNAL_ERROR"}             RST_STREAM with that error code
                                                      (a name from RFC 9113 or a number)
  {"do": "goaway", "last_stream_id": "below",         GOAWAY, then close the connection:
   "code": "NO_ERROR"}                                "below" (the request's stream id - 2,
                                                      at least 0), "at" (the request's) or
                                                      a number
  {"do": "drop", "reset": false}                      close the TCP connection at once,
                                                      no answer, no GOAWAY (reset: with
                                                      a TCP RST instead of a FIN)
  any step may add "repeat": N (take it N times)

The log (--log) gets one JSON object a line, written as it happens:

  {"event": "connection", "conn": 1, "alpn": "h2", "tls": "TLSv1.3"}
  {"event": "request", "conn": 1, "stream": 1, "proto": "h2", "method": "POST",
   "path": "/v2/actions/purchase/esims", "body": "{...}", "do": "rst", "user_agent": "..."}
  {"event": "closed_idle", "conn": 1, "goaway": true}     (an answer's close_after)
  {"event": "connection_error", "conn": 2, "error": "..."}

It exits when --parent-pid is gone, or after --idle-timeout seconds (default
60) with no connection open and nothing received.
"""

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

DEFAULT_BODY = '{"data":[]}'


class Script:
    """The steps, shared by every connection, taken in the order requests arrive."""

    def __init__(self, steps):
        self.steps = []
        for s in steps:
            if not isinstance(s, dict):
                raise ValueError("each step must be a JSON object: %r" % (s,))
            if s.get("do", "answer") not in ("answer", "rst", "goaway", "drop"):
                raise ValueError("unknown step: %r" % (s,))
            self.steps.extend([s] * int(s.get("repeat", 1)))
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            return self.steps.pop(0) if self.steps else {"do": "answer"}


class Log:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, **entry):
        with self.lock:
            self.f.write(json.dumps(entry, sort_keys=True) + "\n")
            self.f.flush()


def error_code(v):
    if isinstance(v, int):
        return v
    return int(h2.errors.ErrorCodes[str(v)])


class Server:
    def __init__(self, args, script):
        self.args = args
        self.script = script
        self.log = Log(args.log)
        self.lock = threading.Lock()
        self.n_conns = 0
        self.open_conns = 0
        self.last_activity = time.monotonic()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(args.cert, args.key)
        self.ctx.set_alpn_protocols(["h2"])

    def touch(self):
        with self.lock:
            self.last_activity = time.monotonic()

    def idle_for(self):
        with self.lock:
            return 0 if self.open_conns else time.monotonic() - self.last_activity

    def serve(self, raw, n):
        with self.lock:
            self.open_conns += 1
        conn = Connection(self, raw, n)
        try:
            conn.run()
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as e:
            self.log.write(event="connection_error", conn=n, error=repr(e))
        finally:
            try:
                (conn.sock or raw).close()
            except OSError:
                pass
            with self.lock:
                self.open_conns -= 1
                self.last_activity = time.monotonic()


class Connection:
    def __init__(self, server, raw, n):
        self.server = server
        self.raw = raw             # handed to the TLS socket (detached) once wrapped
        self.n = n
        self.sock = None
        self.h2 = None
        self.streams = {}          # stream id -> {"headers": dict, "body": bytearray}
        self.close_at = None       # monotonic time to close this idle connection
        self.close_goaway = True

    def send(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        self.raw.settimeout(5)
        self.sock = self.server.ctx.wrap_socket(self.raw, server_side=True)
        alpn = self.sock.selected_alpn_protocol()
        self.server.log.write(event="connection", conn=self.n, alpn=alpn, tls=self.sock.version())
        if alpn != "h2":
            return
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.send()
        while True:
            if self.close_at is not None:
                wait = self.close_at - time.monotonic()
                if wait <= 0:
                    self.close_idle()
                    return
                self.sock.settimeout(wait)
            else:
                self.sock.settimeout(30)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                if self.close_at is not None:
                    continue
                return
            if not data:
                return
            self.server.touch()
            for ev in self.h2.receive_data(data):
                if self.handle(ev) == "closed":
                    return
            self.send()

    def handle(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.streams[ev.stream_id] = {"headers": dict(ev.headers), "body": bytearray()}
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st["body"] += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            st = self.streams.pop(ev.stream_id, None)
            if st is not None:
                return self.request(ev.stream_id, st)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            return "closed"
        return None

    def request(self, sid, st):
        step = self.server.script.next()
        action = step.get("do", "answer")
        h = st["headers"]
        self.server.log.write(event="request", conn=self.n, stream=sid, proto="h2", method=h.get(":method"),
                              path=h.get(":path"), body=st["body"].decode("utf-8", "replace"), do=action,
                              user_agent=h.get("user-agent"))
        if action == "answer":
            body = step.get("body", DEFAULT_BODY).encode("utf-8")
            self.h2.send_headers(sid, [(":status", str(step.get("status", 202))),
                                       ("content-type", "application/json"),
                                       ("content-length", str(len(body))),
                                       ("x-request-id", "h2-%d-%d" % (self.n, sid))])
            self.h2.send_data(sid, body, end_stream=True)
            if "close_after" in step:
                self.close_at = time.monotonic() + float(step["close_after"])
                self.close_goaway = step.get("goaway", True)
            return None
        if action == "rst":
            self.h2.reset_stream(sid, error_code(step.get("code", "INTERNAL_ERROR")))
            return None
        if action == "goaway":
            last = step.get("last_stream_id", "below")
            last = max(sid - 2, 0) if last == "below" else sid if last == "at" else int(last)
            self.h2.close_connection(error_code(step.get("code", "NO_ERROR")), last_stream_id=last)
            self.send()
            self.linger()
            return "closed"
        # drop: no answer, no GOAWAY, no close_notify; "reset": a TCP RST rather than a FIN
        if step.get("reset"):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        return "closed"

    def close_idle(self):
        if self.close_goaway:
            self.h2.close_connection(0)
            self.send()
        self.server.log.write(event="closed_idle", conn=self.n, goaway=self.close_goaway)
        if self.close_goaway:
            self.linger()

    def linger(self):
        """After a GOAWAY: stop sending and read what the peer still sends, so
        that closing does not turn into a TCP reset that could destroy the
        GOAWAY before the peer read it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)  # the TLS layer is dropped: raw bytes from here
            self.sock.settimeout(0.5)
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass


def parent_alive(pid):
    if pid is None:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--script")
    p.add_argument("--script-json")
    p.add_argument("--parent-pid", type=int)
    p.add_argument("--idle-timeout", type=float, default=60)
    args = p.parse_args()
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            steps = json.load(f)
    else:
        steps = json.loads(args.script_json or "[]")
    server = Server(args, Script(steps))

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(0.2)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % lsock.getsockname()[1])
    os.rename(tmp, args.port_file)

    n = 0
    while True:
        if not parent_alive(args.parent_pid):
            print("h2stub: parent gone, exiting", file=sys.stderr)
            break
        if server.idle_for() > args.idle_timeout:
            print("h2stub: idle, exiting", file=sys.stderr)
            break
        try:
            raw, _ = lsock.accept()
        except socket.timeout:
            continue
        n += 1
        server.touch()
        threading.Thread(target=server.serve, args=(raw, n), daemon=True).start()
    lsock.close()
    os._exit(0)  # daemon threads may still sit in recv


if __name__ == "__main__":
    main()
