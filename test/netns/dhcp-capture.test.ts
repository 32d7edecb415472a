// Cross-checks the codec against real peers: DISCOVERs captured from busybox
// udhcpc and ISC dhclient in a network namespace, and scapy reading what
// encode() writes. scapy is the independent reader for both directions.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { decode, encode, encodePacket, MessageType, OPT } from '../../hostnet/dhcp/codec.js';

const PYTHON = '/usr/bin/python3'; // Debian's, which has python3-scapy
const SCAPY = new URL('../helpers/dhcp_scapy.py', import.meta.url).pathname;

interface ScapyView {
  hex: string;
  op: number;
  xid: number;
  flags: number;
  yiaddr: string;
  chaddr: string;
  options: Record<string, unknown>;
}

function scapy(mode: 'hex' | 'pcap', arg: string): ScapyView[] {
  const out = execFileSync(PYTHON, [SCAPY, mode, arg], { encoding: 'utf8' });
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as ScapyView);
}

function run(argv: string[]): string {
  return execFileSync(argv[0] as string, argv.slice(1), {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

t.test('scapy reads an OFFER with option 121 as encode() meant it', async (t) => {
  const request = decode(
    encodePacket({ op: 1, xid: 0xc0ffee, chaddr: '52:54:00:dc:00:01' }, [
      [OPT.MESSAGE_TYPE, Buffer.from([MessageType.DISCOVER])],
      [OPT.PARAMETER_REQUEST_LIST, Buffer.from([1, 3, 6, 15, 26, 121])],
    ]),
  );
  if (!request.ok) throw new Error(request.detail);
  const offer = encode({
    type: 'OFFER',
    request: request.packet,
    serverId: '10.44.0.1',
    yiaddr: '10.44.0.23',
    leaseTime: 7200,
    params: {
      subnetMask: '255.255.255.0',
      routers: ['10.44.0.1'],
      dnsServers: ['10.44.0.1', '9.9.9.9'],
      domainName: 'dc.test',
      mtu: 1450,
      classlessRoutes: [
        { destination: '169.254.169.254/32', router: '0.0.0.0' },
        { destination: '10.0.0.0/8', router: '10.44.0.254' },
        { destination: '0.0.0.0/0', router: '10.44.0.1' },
      ],
    },
  });
  const [view] = scapy('hex', offer.toString('hex'));
  t.match(view, {
    op: 2,
    xid: 0xc0ffee,
    yiaddr: '10.44.0.23',
    chaddr: '52:54:00:dc:00:01',
    options: {
      'message-type': 2,
      server_id: '10.44.0.1',
      lease_time: 7200,
      subnet_mask: '255.255.255.0',
      router: '10.44.0.1',
      name_server: ['10.44.0.1', '9.9.9.9'],
      domain: { text: 'dc.test' },
      'interface-mtu': 1450,
      end: true,
    },
  });
  t.same(view?.options.classless_static_routes, [
    '169.254.169.254/32:0.0.0.0',
    '10.0.0.0/8:10.44.0.254',
    '0.0.0.0/0:10.44.0.1',
  ]);
});

t.test('DISCOVERs from real clients decode as scapy reads them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dc-dhcp-'));
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const ns of ['dc-cap', 'dc-srv']) {
      try {
        run(['ip', 'netns', 'del', ns]);
      } catch {
        // not created, or already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  run(['ip', 'netns', 'add', 'dc-cap']);
  run(['ip', 'netns', 'add', 'dc-srv']);
  run([
    'ip',
    'link',
    'add',
    'dc-c0',
    'netns',
    'dc-cap',
    'type',
    'veth',
    'peer',
    'name',
    'dc-s0',
    'netns',
    'dc-srv',
  ]);
  run(['ip', '-n', 'dc-cap', 'link', 'set', 'dc-c0', 'up']);
  run(['ip', '-n', 'dc-srv', 'link', 'set', 'dc-s0', 'up']);
  const mac = (
    JSON.parse(run(['ip', '-n', 'dc-cap', '-j', 'link', 'show', 'dc-c0'])) as { address: string }[]
  )[0]?.address;

  /** Starts a capture of one client frame to port 67, runs the client, returns the frame as scapy sees it. */
  async function capture(name: string, client: string[]): Promise<ScapyView> {
    const pcap = join(dir, `${name}.pcap`);
    const dump = spawn('ip', [
      'netns',
      'exec',
      'dc-srv',
      'tcpdump',
      '-i',
      'dc-s0',
      '-n',
      '-U',
      '-c',
      '1',
      '-w',
      pcap,
      'udp dst port 67',
    ]);
    children.push(dump);
    await new Promise<void>((resolve, reject) => {
      dump.stderr.on('data', (d: Buffer) => d.toString().includes('listening on') && resolve());
      dump.on('exit', (code) => reject(new Error(`tcpdump exited with ${code}`)));
    });
    const cli = spawn('ip', ['netns', 'exec', 'dc-cap', ...client], { stdio: 'ignore' });
    children.push(cli);
    const captured = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      dump.on('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    cli.kill('SIGTERM');
    if (!captured) dump.kill('SIGTERM');
    t.ok(captured, `${name} sent a frame to port 67`);
    const views = scapy('pcap', pcap);
    t.equal(views.length, 1);
    return views[0] as ScapyView;
  }

  function check(name: string, view: ScapyView) {
    const r = decode(Buffer.from(view.hex, 'hex'));
    if (!r.ok) {
      t.fail(`${name}: ${r.reason}: ${r.detail}`);
      return undefined;
    }
    const p = r.packet;
    t.equal(p.messageType, MessageType.DISCOVER, `${name}: message type`);
    t.equal(p.op, 1);
    t.equal(p.chaddr, mac, `${name}: chaddr is the interface's MAC`);
    t.equal(p.chaddr, view.chaddr);
    t.equal(p.xid, view.xid, `${name}: xid 0x${p.xid.toString(16)}`);
    t.equal(p.flags, view.flags);
    t.same(p.options.parameterRequestList, view.options.param_req_list, `${name}: parameter request list`);
    t.ok(p.options.parameterRequestList?.includes(OPT.CLASSLESS_ROUTES), `${name} asks for option 121`);
    t.equal(p.options.maxMessageSize, view.options.max_dhcp_size);
    const clientId = view.options.client_id as { hex: string } | undefined;
    t.equal(p.options.clientId?.raw.toString('hex'), clientId?.hex);
    t.equal(
      p.options.hostname,
      (view.options.hostname as { text: string } | undefined)?.text.replace(/\0+$/, ''),
    );
    t.comment(`${name}: ${p.hlen}-octet chaddr ${p.chaddr}, options ${[...p.options.raw.keys()].join(',')}`);
    return p;
  }

  const udhcpc = await capture('udhcpc', [
    'udhcpc',
    '-i',
    'dc-c0',
    '-n',
    '-q',
    '-t',
    '1',
    '-T',
    '3',
    '-s',
    '/bin/true',
    '-x',
    'hostname:dc-guest',
    '-O',
    'staticroutes',
  ]);
  const u = check('udhcpc', udhcpc);
  t.equal(u?.options.hostname, 'dc-guest');

  const dhclient = await capture('dhclient', [
    'dhclient',
    '-1',
    '-d',
    '-sf',
    '/bin/true',
    '-pf',
    join(dir, 'dhclient.pid'),
    '-lf',
    join(dir, 'dhclient.leases'),
    'dc-c0',
  ]);
  check('dhclient', dhclient);
});
