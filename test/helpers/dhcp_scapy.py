#!/usr/bin/python3
"""Parses DHCP messages with scapy, as an independent reader to check berth's codec.

  dhcp_scapy.py hex <hex>     one BOOTP message (the UDP payload)
  dhcp_scapy.py pcap <file>   every UDP packet to port 67 in a capture

Prints one JSON object per message: the fixed fields, the hex payload and the
options as scapy names them.
"""
import json
import sys

from scapy.all import BOOTP, DHCP, UDP, rdpcap  # noqa: E402


def plain(value):
    if isinstance(value, bytes):
        return {"hex": value.hex(), "text": value.decode("latin1")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def describe(payload: bytes) -> dict:
    pkt = BOOTP(payload)
    out = {
        "hex": payload.hex(),
        "op": pkt.op,
        "xid": pkt.xid,
        "flags": int(pkt.flags),
        "ciaddr": pkt.ciaddr,
        "yiaddr": pkt.yiaddr,
        "siaddr": pkt.siaddr,
        "giaddr": pkt.giaddr,
        "chaddr": pkt.chaddr[: pkt.hlen].hex(":"),
        "options": {},
    }
    if DHCP in pkt:
        for opt in pkt[DHCP].options:
            if isinstance(opt, tuple):
                name, *values = opt
                out["options"][str(name)] = plain(values[0] if len(values) == 1 else values)
            elif opt != "pad":
                out["options"][str(opt)] = True
    return out


def main() -> None:
    mode, arg = sys.argv[1], sys.argv[2]
    if mode == "hex":
        print(json.dumps(describe(bytes.fromhex(arg))))
    elif mode == "pcap":
        for frame in rdpcap(arg):
            if UDP in frame and frame[UDP].dport == 67:
                print(json.dumps(describe(bytes(frame[UDP].payload))))
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
