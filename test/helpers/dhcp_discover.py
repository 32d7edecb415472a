#!/usr/bin/python3
"""Sends one DHCPDISCOVER from inside a netns and counts the answers to it.

  dhcp_discover.py <iface> <src-mac> <chaddr> [wait-seconds]

The frame leaves with Ethernet source <src-mac> and BOOTP chaddr <chaddr>,
so a guest can claim another guest's MAC in the DHCP payload only. Prints
{"answers": N, "types": [...]}, counting replies whose xid is ours.
"""
import json
import random
import sys
import time

from scapy.all import BOOTP, DHCP, IP, UDP, AsyncSniffer, Ether, conf, sendp  # noqa: E402


def main() -> None:
    iface, src, chaddr = sys.argv[1], sys.argv[2], sys.argv[3]
    wait = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    conf.checkIPaddr = False
    xid = random.randint(1, 0xFFFFFFFF)
    frame = (
        Ether(src=src, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes.fromhex(chaddr.replace(":", "")), xid=xid, flags=0x8000)
        / DHCP(options=[("message-type", "discover"), ("param_req_list", [1, 3, 6, 121]), "end"])
    )
    sniffer = AsyncSniffer(iface=iface, filter="udp and src port 67", store=True)
    sniffer.start()
    time.sleep(0.3)
    sendp(frame, iface=iface, verbose=False)
    time.sleep(wait)
    packets = sniffer.stop() or []
    types = []
    for p in packets:
        if BOOTP in p and p[BOOTP].xid == xid:
            opts = p[DHCP].options if DHCP in p else []
            kinds = [o[1] for o in opts if isinstance(o, tuple) and o[0] == "message-type"]
            types.append(kinds[0] if kinds else None)
    print(json.dumps({"answers": len(types), "types": types}))


if __name__ == "__main__":
    main()
