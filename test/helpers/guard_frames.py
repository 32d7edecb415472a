#!/usr/bin/env python3
"""Sends crafted frames for the guard netns tests.

usage: guard_frames.py IFACE SPEC...  where SPEC is one of
  garp=IP            gratuitous ARP request claiming IP, from the interface's MAC
  dhcp=CHADDR        DHCPDISCOVER from 0.0.0.0:68 to broadcast with that chaddr
  dhcpserver=IP      a DHCPOFFER-shaped frame from IP:67 (a rogue server)
  ethertype=0xNNNN   a broadcast frame of that ethertype
  ra=LINKLOCAL       an IPv6 router advertisement from that link-local address
  vlan=VID           an 802.1Q-tagged IPv4 ping to broadcast (VLAN hopping from a guest)
Every frame leaves with the interface's own source MAC, so only the field under test is spoofed.
"""
import logging
import random
import sys

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import (  # noqa: E402
    ARP, BOOTP, DHCP, ICMP, ICMPv6ND_RA, IP, UDP, Dot1Q, Ether, IPv6, Raw, get_if_hwaddr, sendp,
)

BROADCAST = "ff:ff:ff:ff:ff:ff"


def frame(src, kind, arg):
    if kind == "garp":
        return Ether(src=src, dst=BROADCAST) / ARP(op=1, hwsrc=src, psrc=arg, hwdst="00:00:00:00:00:00", pdst=arg)
    if kind == "dhcp":
        chaddr = bytes.fromhex(arg.replace(":", "")) + bytes(10)
        return (Ether(src=src, dst=BROADCAST) / IP(src="0.0.0.0", dst="255.255.255.255")
                / UDP(sport=68, dport=67) / BOOTP(op=1, chaddr=chaddr, xid=random.getrandbits(32), flags=0x8000)
                / DHCP(options=[("message-type", "discover"), "end"]))
    if kind == "dhcpserver":
        return (Ether(src=src, dst=BROADCAST) / IP(src=arg, dst="255.255.255.255")
                / UDP(sport=67, dport=68) / BOOTP(op=2, xid=1) / DHCP(options=[("message-type", "offer"), "end"]))
    if kind == "dhcpreply":
        # What an endpoint sends back to a client with no address yet: a broadcast whose chaddr names the client.
        chaddr = bytes.fromhex(arg.replace(":", "")) + bytes(10)
        return (Ether(src=src, dst=BROADCAST) / IP(src="10.77.0.1", dst="255.255.255.255")
                / UDP(sport=67, dport=68) / BOOTP(op=2, xid=2, chaddr=chaddr, flags=0x8000)
                / DHCP(options=[("message-type", "offer"), "end"]))
    if kind == "ethertype":
        return Ether(src=src, dst=BROADCAST, type=int(arg, 16)) / Raw(b"berth-guard-test".ljust(46, b"."))
    if kind == "ra":
        return Ether(src=src, dst="33:33:00:00:00:01") / IPv6(src=arg, dst="ff02::1") / ICMPv6ND_RA()
    if kind == "vlan":
        return Ether(src=src, dst=BROADCAST) / Dot1Q(vlan=int(arg)) / IP(dst="255.255.255.255") / ICMP()
    raise SystemExit(f"unknown frame kind {kind!r}")


def main():
    iface, specs = sys.argv[1], sys.argv[2:]
    src = get_if_hwaddr(iface)
    frames = [frame(src, *spec.split("=", 1)) for spec in specs]
    # Three copies each, so one lost frame cannot fail a "seen" assertion; "dropped" assertions
    # also check the drop counter, which a lost frame cannot raise.
    sendp(frames * 3, iface=iface, verbose=False)


if __name__ == "__main__":
    main()
