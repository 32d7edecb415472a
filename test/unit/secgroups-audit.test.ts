// Security-group drops in the guard's drop pipeline: the NFLOG prefix
// "berth secgroup <port> " parsed into reason and subject, and the audit
// folding per guarded port into `secgroup.drop` records.
import t from 'tap';
import type { AuditInput } from '../../agent/audit/audit-log.js';
import { GuardDropAudit, type PortInfo } from '../../agent/services/guard-audit.js';
import type { GuardDropEvent } from '../../hostnet/guard/drop-log.js';
import { parseNflog } from '../../hostnet/guard/nflog-parse.js';

/** One NFLOG message as the kernel sends it (little-endian TLV headers): prefix, physindev, ethernet header, payload. */
function nflog(prefix: string, payload: Buffer): Buffer {
  const tlv = (type: number, value: Buffer) => {
    const len = 4 + value.length;
    const b = Buffer.alloc((len + 3) & ~3);
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(type, 2);
    value.copy(b, 4);
    return b;
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const hw = Buffer.from('0200000000100200000000120800', 'hex');
  return Buffer.concat([
    Buffer.alloc(4),
    tlv(10, Buffer.from(`${prefix}\0`, 'latin1')),
    tlv(4, u32(2)),
    tlv(6, u32(7)),
    tlv(16, hw),
    tlv(9, payload),
  ]);
}

/** An IPv4 header + the first 4 bytes of TCP: 10.78.0.12:40000 -> 10.78.0.10:22. */
function tcpSyn(): Buffer {
  const ip = Buffer.alloc(24);
  ip[0] = 0x45;
  ip[9] = 6;
  Buffer.from([10, 78, 0, 12]).copy(ip, 12);
  Buffer.from([10, 78, 0, 10]).copy(ip, 16);
  ip.writeUInt16BE(40000, 20);
  ip.writeUInt16BE(22, 22);
  return ip;
}

t.test('the prefix carries the guarded port; the guard’s prefixes parse as before', async (t) => {
  t.match(parseNflog(nflog('berth secgroup sapddddddd0 ', tcpSyn())), {
    reason: 'secgroup',
    subject: 'sapddddddd0',
    ifindex: 7,
    ipSrc: '10.78.0.12',
    ipDst: '10.78.0.10',
    ipProto: 6,
    dport: 22,
  });
  const guard = parseNflog(nflog('berth ip-spoof ', tcpSyn()));
  t.equal(guard?.reason, 'ip-spoof');
  t.equal(guard?.subject, undefined);
  t.equal(guard?.dport, undefined, 'guard records stay as they were');
});

t.test('audit: secgroup drops fold per guarded port and name both ends', async (t) => {
  const written: AuditInput[] = [];
  const classes: Record<string, PortInfo> = {
    sapd0: { class: 'guest', network: 'n1', instance: 'db-1' },
    sapo0: { class: 'guest', network: 'n1', instance: 'other-1' },
    sapx0: { class: 'guest', network: 'n1', instance: 'x-1' },
  };
  const audit = new GuardDropAudit({
    append: async (i) => written.push(i),
    classify: (p) => classes[p] ?? { class: 'foreign' },
    windowMs: 50,
  });
  const drop: GuardDropEvent = {
    reason: 'secgroup',
    subject: 'sapd0',
    port: 'sapo0',
    ifindex: 7,
    srcMac: '02:00:00:00:00:12',
    ethertype: 0x0800,
    ipSrc: '10.78.0.12',
    ipDst: '10.78.0.10',
    ipProto: 6,
    dport: 22,
  };
  audit.drop(drop);
  audit.drop({ ...drop, port: 'sapx0', ipSrc: '10.78.0.13' });
  audit.drop({ ...drop, subject: 'sapx0' });
  t.equal(written.length, 2, 'two senders to one port fold; another guarded port gets its own record');
  t.same(written[0], {
    event: 'secgroup.drop',
    outcome: 'refused',
    reason: 'secgroup',
    port: 'sapd0',
    mac: '02:00:00:00:00:12',
    ip: '10.78.0.12',
    network: 'n1',
    instance: 'db-1',
    detail: {
      count: 1,
      from_port: 'sapo0',
      from_class: 'guest',
      from_instance: 'other-1',
      ip_dst: '10.78.0.10',
      ethertype: '0x0800',
      proto: 'tcp',
      dport: 22,
    },
  });
  await new Promise((r) => setTimeout(r, 80));
  t.equal(written.length, 3);
  t.equal(written[2]?.detail?.count, 1);
  t.equal(written[2]?.ip, '10.78.0.13', 'the folded record shows the latest sender');
  audit.close();
});
