#!/usr/bin/python3
"""TCP flows for the security-group tests, run inside a guest netns.

serve PORT...            echo server on each port; prints "ready" once listening
probe IP PORT TIMEOUT    exit 0 when a connection echoes one line within TIMEOUT s
hold IP PORT             one connection, one echo every 0.1 s; prints "ok N" per
                         echo, and "lost" (exit 1) when one takes over 0.7 s
blast IP PORT SECONDS    sends 64 KiB writes for SECONDS to an echo server that
                         discards (serve's echo is fine: it reads as fast); prints Mbit/s
rr IP PORT SECONDS       1-byte request/response round trips for SECONDS; prints per second
"""
import socket
import sys
import threading
import time


def echo(conn):
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                return
            conn.sendall(data)


def serve(ports):
    socks = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        s.listen(64)
        socks.append(s)

    def accept(s):
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    for s in socks:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def probe(ip, port, timeout):
    try:
        with socket.create_connection((ip, int(port)), timeout=float(timeout)) as s:
            s.settimeout(float(timeout))
            s.sendall(b"x\n")
            return 0 if s.recv(16) == b"x\n" else 1
    except OSError:
        return 1


def hold(ip, port):
    s = socket.create_connection((ip, int(port)), timeout=2)
    s.settimeout(0.7)
    n = 0
    while True:
        try:
            s.sendall(b"y\n")
            if s.recv(16) != b"y\n":
                raise OSError("short echo")
        except OSError:
            print("lost", flush=True)
            return 1
        n += 1
        print(f"ok {n}", flush=True)
        time.sleep(0.1)


def blast(ip, port, seconds):
    s = socket.create_connection((ip, int(port)), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    chunk = b"z" * 65536
    sent = 0
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: s.recv(1 << 20), b"")], daemon=True)
    drain.start()
    end = time.monotonic() + float(seconds)
    start = time.monotonic()
    while time.monotonic() < end:
        s.sendall(chunk)
        sent += len(chunk)
    print(f"{sent * 8 / (time.monotonic() - start) / 1e6:.0f}", flush=True)
    return 0


def rr(ip, port, seconds):
    s = socket.create_connection((ip, int(port)), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = 0
    end = time.monotonic() + float(seconds)
    start = time.monotonic()
    while time.monotonic() < end:
        s.sendall(b"q")
        s.recv(1)
        n += 1
    print(f"{n / (time.monotonic() - start):.0f}", flush=True)
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(args)
    elif cmd == "probe":
        sys.exit(probe(*args))
    elif cmd == "hold":
        sys.exit(hold(*args))
    elif cmd == "blast":
        sys.exit(blast(*args))
    elif cmd == "rr":
        sys.exit(rr(*args))
    sys.exit(2)
