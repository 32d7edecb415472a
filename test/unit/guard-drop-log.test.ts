// The guard's drop log: a real capture of four drops (tcpdump -i nflog:<group>
// -w - on this kernel, from the guard's own log rules) parsed into events; the
// reader over a fed byte stream; and the audit folding, one record per port
// and reason per second with a count.
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { AuditInput } from '../../agent/audit/audit-log.js';
import { classifyPort, GuardDropAudit, type PortDirectoryView } from '../../agent/services/guard-audit.js';
import { DropLog, type GuardDropEvent, type StreamHandlers } from '../../hostnet/guard/drop-log.js';
import { PcapReader, parseNflog } from '../../hostnet/guard/nflog-parse.js';

const CAPTURE = readFileSync(new URL('./golden/nflog-guard-drops.pcap', import.meta.url));

function records(bytes: Buffer, chunk = bytes.length) {
  const pcap = new PcapReader();
  const out = [];
  for (let i = 0; i < bytes.length; i += chunk) out.push(...pcap.push(bytes.subarray(i, i + chunk)));
  return out.map((r) => parseNflog(r, pcap.littleEndian));
}

t.test('a real capture: reason, port, frame MACs, IPs, ARP sender, DHCP chaddr', async (t) => {
  const drops = records(CAPTURE);
  t.equal(drops.length, 4);
  // Port hxpa was ifindex 3 on bridge hxb1 (ifindex 2): the physical in-device wins.
  t.same(drops[0], {
    reason: 'mac-spoof',
    ifindex: 3,
    dstMac: 'ff:ff:ff:ff:ff:ff',
    srcMac: '0a:b7:e7:ee:ee:01',
    ethertype: 0x0800,
    ipSrc: '10.9.0.2',
    ipDst: '10.9.0.9',
  });
  t.same(drops[1], {
    reason: 'arp-spoof',
    ifindex: 3,
    dstMac: 'ff:ff:ff:ff:ff:ff',
    srcMac: '0a:b7:e7:00:00:01',
    ethertype: 0x0806,
    arpSenderMac: '0a:b7:e7:00:00:01',
    arpSenderIp: '10.9.0.7',
    arpTargetIp: '10.9.0.1',
  });
  t.equal(drops[2]?.reason, 'ip-spoof');
  t.equal(drops[2]?.ipSrc, '10.9.0.5');
  t.equal(drops[3]?.reason, 'dhcp-chaddr');
  t.equal(drops[3]?.ipSrc, '0.0.0.0');
  t.equal(drops[3]?.chaddr, '0a:b7:e7:ab:cd:ef', 'the forged chaddr');
  t.same(records(CAPTURE, 7), drops, 'the same when the stream arrives in 7-byte pieces');
});

t.test("refuses a stream that is not NFLOG pcap; ignores records without berth's prefix", async (t) => {
  t.throws(() => new PcapReader().push(Buffer.alloc(24)), /not a pcap stream/);
  const ethernet = Buffer.from(CAPTURE.subarray(0, 24));
  ethernet.writeUInt32LE(1, 20);
  t.throws(() => new PcapReader().push(ethernet), /link type 1, want 239/);
  const [first] = new PcapReader().push(CAPTURE) as [Buffer];
  const foreign = Buffer.from(first);
  foreign.write('other', first.indexOf('berth'), 'latin1');
  t.equal(parseNflog(foreign), undefined);
  t.equal(parseNflog(first.subarray(0, 12)), undefined, 'a cut record yields nothing, not a throw');
});

t.test('the reader names the port by ifindex and restarts tcpdump when it dies', async (t) => {
  const spawned: { argv: string[]; h: StreamHandlers }[] = [];
  const events: GuardDropEvent[] = [];
  let linkReads = 0;
  const log = new DropLog({
    group: 4242,
    onDrop: (e) => events.push(e),
    spawner: {
      spawn(argv, h) {
        spawned.push({ argv, h });
        h.spawned();
        return { kill() {} };
      },
    },
    runner: {
      async run() {
        linkReads++;
        return { stdout: JSON.stringify([{ ifindex: 3, ifname: 'bthpabc0' }]), stderr: '' };
      },
    },
    backoff: { initialMs: 5, maxMs: 20 },
  });
  log.start();
  t.same(spawned[0]?.argv, ['tcpdump', '-Z', 'root', '-i', 'nflog:4242', '-U', '-w', '-', '-s', '65535']);
  spawned[0]?.h.data(CAPTURE);
  await new Promise((r) => setTimeout(r, 20));
  t.equal(events.length, 4);
  t.same(
    events.map((e) => e.port),
    ['bthpabc0', 'bthpabc0', 'bthpabc0', 'bthpabc0'],
  );
  t.equal(linkReads, 1, 'one link read for the burst');
  spawned[0]?.h.exit('exit code 1');
  await new Promise((r) => setTimeout(r, 30));
  t.equal(spawned.length, 2, 'restarted');
  log.stop();
});

const view: PortDirectoryView = {
  guest: (i) => (i === 'bthpabc0' ? { instance: 'web', network: 'default' } : undefined),
  networks: () => [{ name: 'default', endpoint: 'bthe123456', uplinks: ['eth1', 'bthv1234.100'] }],
};

t.test('port classes', async (t) => {
  t.same(classifyPort('bthpabc0', view), { class: 'guest', network: 'default', instance: 'web' });
  t.same(classifyPort('bthe123456', view), { class: 'endpoint', network: 'default' });
  t.same(classifyPort('bthv1234.100', view), { class: 'uplink', network: 'default' });
  t.same(classifyPort('eth1', view), { class: 'uplink', network: 'default' });
  t.same(classifyPort('veth9', view), { class: 'foreign' });
});

t.test('audit: one record per port and reason per second, the rest folded into detail.count', async (t) => {
  const written: AuditInput[] = [];
  const audit = new GuardDropAudit({
    append: async (i) => written.push(i),
    classify: (p) => classifyPort(p, view),
    windowMs: 50,
  });
  const spoof: GuardDropEvent = {
    reason: 'mac-spoof',
    ifindex: 3,
    port: 'bthpabc0',
    srcMac: '0a:b7:e7:ee:ee:01',
    ethertype: 0x0800,
    ipSrc: '10.9.0.2',
  };
  for (let i = 0; i < 7; i++) audit.drop(spoof);
  audit.drop({ ...spoof, reason: 'ip-spoof' });
  t.equal(written.length, 2, 'the first of each reason at once');
  t.same(written[0], {
    event: 'guard.drop',
    outcome: 'refused',
    reason: 'mac-spoof',
    port: 'bthpabc0',
    mac: '0a:b7:e7:ee:ee:01',
    ip: '10.9.0.2',
    network: 'default',
    instance: 'web',
    detail: { class: 'guest', count: 1, ethertype: '0x0800' },
  });
  await new Promise((r) => setTimeout(r, 80));
  t.equal(written.length, 3, 'the 6 folded mac-spoof drops in one record at the end of the second');
  t.equal(written[2]?.detail?.count, 6);
  await new Promise((r) => setTimeout(r, 120));
  t.equal(written.length, 3, 'a quiet second writes nothing');
  audit.drop(spoof);
  t.equal(written.length, 4, 'after a quiet second the next drop is written at once');
  audit.drop(spoof);
  audit.close();
  t.equal(written.length, 5, 'close writes what was folded');
});
