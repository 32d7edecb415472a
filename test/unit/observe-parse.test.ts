import t from 'tap';
import {
  parseFdbDump,
  parseFdbLine,
  parseNeighDump,
  parseNeighLine,
  plainIPv4,
} from '../../hostnet/observe/parse.js';

// Captured from iproute2 6.1 on Debian 12 (`bridge -j fdb show`), trimmed.
const FDB_DUMP = JSON.stringify([
  { mac: '33:33:00:00:00:01', ifname: 'obbx', flags: ['self'], state: 'permanent' },
  { mac: '02:00:00:00:00:11', ifname: 'obpx1', flags: [], master: 'obbx', state: '' },
  { mac: 'fa:c9:3e:1c:82:ef', ifname: 'obpx1', flags: [], master: 'obbx', state: 'permanent' },
  { mac: '33:33:00:00:00:01', ifname: 'obpx1', flags: ['self'], state: 'permanent' },
  { mac: '02:00:00:00:00:99', ifname: 'obpx3', flags: [], master: 'obbx', state: 'static' },
  { mac: 'BE:61:65:94:69:FB', ifname: 'obbx', flags: [], master: 'obbx', state: '' },
  { mac: '02:00:00:00:00:42', ifname: 'obt1p', flags: [], master: 'obt1', vlan: 7, state: '' },
  { mac: '02:00:00:00:00:43', ifname: 'obpx4', flags: ['sticky'], master: 'obbx', state: 'static' },
]);

t.test('FDB dump keeps learned and static entries behind bridge ports', async (t) => {
  t.same(parseFdbDump(FDB_DUMP), [
    { mac: '02:00:00:00:00:11', port: 'obpx1', bridge: 'obbx', static: false, sticky: false },
    { mac: '02:00:00:00:00:99', port: 'obpx3', bridge: 'obbx', static: true, sticky: false },
    { mac: '02:00:00:00:00:42', port: 'obt1p', bridge: 'obt1', vlan: 7, static: false, sticky: false },
    { mac: '02:00:00:00:00:43', port: 'obpx4', bridge: 'obbx', static: true, sticky: true },
  ]);
  t.same(parseFdbDump(''), []);
  t.same(parseFdbDump('[]\n'), []);
  t.throws(() => parseFdbDump('{}'), /not a JSON array/);
});

t.test('FDB monitor lines', async (t) => {
  t.same(parseFdbLine('02:00:00:00:00:11 dev obpx1 master obbx '), {
    kind: 'add',
    record: { mac: '02:00:00:00:00:11', port: 'obpx1', bridge: 'obbx', static: false, sticky: false },
  });
  t.same(parseFdbLine('Deleted 02:00:00:00:00:11 dev obpx1 master obbx '), {
    kind: 'del',
    record: { mac: '02:00:00:00:00:11', port: 'obpx1', bridge: 'obbx', static: false, sticky: false },
  });
  t.same(parseFdbLine('[FDB]02:00:00:00:00:99 dev obpx3 vlan 12 master obbx static'), {
    kind: 'add',
    record: {
      mac: '02:00:00:00:00:99',
      port: 'obpx3',
      bridge: 'obbx',
      vlan: 12,
      static: true,
      sticky: false,
    },
  });
  // berth's pin, as iproute2 6.1 prints it.
  t.same(parseFdbLine('02:aa:00:00:00:01 dev obpx1 sticky master obbx static'), {
    kind: 'add',
    record: { mac: '02:aa:00:00:00:01', port: 'obpx1', bridge: 'obbx', static: true, sticky: true },
  });
  // The port's and bridge's own addresses, and entries of the device itself (self), say nothing about guests.
  t.equal(parseFdbLine('fa:c9:3e:1c:82:ef dev obpx1 master obbx permanent'), undefined);
  t.equal(parseFdbLine('Deleted be:61:65:94:69:fb dev obbx master obbx permanent'), undefined);
  t.equal(parseFdbLine('33:33:00:00:00:01 dev obpx1 self permanent'), undefined);
  t.equal(parseFdbLine('02:00:00:00:00:11 dev obbx master obbx '), undefined);
  t.equal(parseFdbLine(''), undefined);
  t.equal(parseFdbLine('garbage dev x master y'), undefined);
});

t.test('neighbour dump keeps usable IPv4 entries only', async (t) => {
  const dump = JSON.stringify([
    { dst: '10.99.0.77', dev: 'eth0', state: ['INCOMPLETE'] },
    { dst: '10.99.0.11', dev: 'eth0', lladdr: '02:00:00:00:00:11', state: ['DELAY'] },
    { dst: '10.99.0.13', dev: 'eth0', lladdr: '02:00:00:00:00:13', state: ['STALE'] },
    { dst: '10.99.0.14', dev: 'eth0', lladdr: '02:00:00:00:00:14', state: ['FAILED'] },
    { dst: '10.99.0.15', dev: 'eth0', lladdr: '02:00:00:00:00:15', state: ['PERMANENT'] },
    { dst: '10.99.0.16', dev: 'eth0', lladdr: '02:00:00:00:00:16', state: ['NOARP'] },
    { dst: 'fe80::1', dev: 'eth0', lladdr: '02:00:00:00:00:17', state: ['REACHABLE'] },
    { dst: '10.99.0.18', dev: 'eth0', lladdr: '02:00:00:00:00:18', router: null, state: ['REACHABLE'] },
  ]);
  t.same(parseNeighDump(dump), [
    { ip: '10.99.0.11', dev: 'eth0', mac: '02:00:00:00:00:11', permanent: false },
    { ip: '10.99.0.13', dev: 'eth0', mac: '02:00:00:00:00:13', permanent: false },
    { ip: '10.99.0.15', dev: 'eth0', mac: '02:00:00:00:00:15', permanent: true },
    { ip: '10.99.0.18', dev: 'eth0', mac: '02:00:00:00:00:18', permanent: false },
  ]);
  t.same(parseNeighDump(''), []);
});

t.test('neighbour monitor lines', async (t) => {
  t.same(parseNeighLine('10.99.0.11 dev eth0 lladdr 02:00:00:00:00:11 STALE '), {
    kind: 'add',
    record: { ip: '10.99.0.11', dev: 'eth0', mac: '02:00:00:00:00:11', permanent: false },
  });
  // berth's own entry: only this state decides identity.
  t.same(parseNeighLine('10.99.0.11 dev ep0 lladdr 02:00:00:00:00:11 PERMANENT'), {
    kind: 'add',
    record: { ip: '10.99.0.11', dev: 'ep0', mac: '02:00:00:00:00:11', permanent: true },
  });
  t.same(parseNeighLine('[NEIGH]10.99.0.11 dev eth0 lladdr 02:00:00:00:00:AA router REACHABLE'), {
    kind: 'add',
    record: { ip: '10.99.0.11', dev: 'eth0', mac: '02:00:00:00:00:aa', permanent: false },
  });
  t.same(parseNeighLine('Deleted 10.99.0.11 dev eth0 lladdr 02:00:00:00:00:11 STALE'), {
    kind: 'del',
    ip: '10.99.0.11',
    dev: 'eth0',
  });
  // Unusable states take the IP out of the table.
  t.same(parseNeighLine('10.99.0.11 dev eth0  FAILED'), { kind: 'del', ip: '10.99.0.11', dev: 'eth0' });
  t.same(parseNeighLine('10.99.0.12 dev eth0 lladdr 02:00:00:00:00:12 INCOMPLETE'), {
    kind: 'del',
    ip: '10.99.0.12',
    dev: 'eth0',
  });
  t.equal(parseNeighLine('miss 10.99.0.11 dev eth0  INCOMPLETE'), undefined);
  t.equal(parseNeighLine('fe80::1 dev eth0 lladdr 02:00:00:00:00:11 STALE'), undefined);
  t.equal(parseNeighLine('10.99.0.11 lladdr 02:00:00:00:00:11 STALE'), undefined);
});

t.test('dual-stack source addresses', async (t) => {
  t.equal(plainIPv4('::ffff:10.99.0.11'), '10.99.0.11');
  t.equal(plainIPv4('10.99.0.11'), '10.99.0.11');
});
