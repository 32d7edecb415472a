import t from 'tap';
import {
  cidrContains,
  cidrProblem,
  intToIp,
  intToMac,
  ipToInt,
  macToInt,
  parseCidr,
} from '../../hostnet/ipv4.js';

t.test('CIDR parsing names the problem', async (t) => {
  t.equal(cidrProblem('10.0.0.0/33'), '"10.0.0.0/33" is not a CIDR');
  t.equal(cidrProblem('10.0.0.1/24'), '"10.0.0.1/24" has host bits set; did you mean 10.0.0.0/24?');
  t.equal(cidrProblem('300.0.0.0/8'), '"300.0.0.0/8" is not a CIDR');
  t.equal(cidrProblem('10.0.0.0/24'), undefined);
  t.same(parseCidr('192.168.4.0/22'), { network: ipToInt('192.168.4.0'), prefix: 22 });
  t.equal(parseCidr('0.0.0.0/0')?.prefix, 0);
});

t.test('address arithmetic round-trips', async (t) => {
  for (const ip of ['0.0.0.0', '10.1.2.3', '255.255.255.255', '169.254.169.254'])
    t.equal(intToIp(ipToInt(ip)), ip);
  t.throws(() => ipToInt('1.2.3'), /not an IPv4 address/);
  const cidr = parseCidr('10.0.0.0/24');
  t.ok(cidr && cidrContains(cidr, ipToInt('10.0.0.255')));
  t.notOk(cidr && cidrContains(cidr, ipToInt('10.0.1.0')));
  t.equal(intToMac(macToInt('0a:b7:e7:00:00:ff') + 1), '0a:b7:e7:00:01:00');
  t.throws(() => macToInt('0A:B7:E7:00:00:FF'), /not a MAC address/);
});
