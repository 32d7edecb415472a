// The guard renderer as text: a golden script for two ports and one endpoint,
// plus the offset arithmetic and input checks it relies on.
import { createHash } from 'node:crypto';
import t from 'tap';
import { canonicalIPv6, ipv6Hex, linkLocalFromMac, parseIPv6 } from '../../hostnet/guard/ipv6.js';
import { ROUTINE_REASONS } from '../../hostnet/guard/reasons.js';
import {
  chaddrMatch,
  DROP_REASONS,
  EDGE_REASONS,
  GUARD_REASONS,
  type GuardState,
  LOG_PREFIX,
  portFingerprint,
  renderGuard,
  skeletonFingerprint,
  TABLE_COUNTERS,
} from '../../hostnet/guard/render.js';
import { Names } from '../../hostnet/names.js';

const names = new Names('ga');
const twoPorts: GuardState = {
  ports: [
    { ifname: 'gapb', mac: '02:00:00:00:00:0b', ipv4: '10.9.0.11', network: 'n1', bridge: 'gab1' },
    {
      ifname: 'gapa',
      mac: '02:00:00:00:00:0a',
      ipv4: '10.9.0.10',
      network: 'n1',
      bridge: 'gab1',
      ipv6: ['2001:DB8:0::a'],
    },
  ],
  endpoints: [{ network: 'n1', bridge: 'gab1', ifname: 'gae1', serviceIp: '10.9.0.254' }],
};

const GOLDEN = `add table bridge ga_guard
add counter bridge ga_guard unguarded
add counter bridge ga_guard dhcp-steer
add counter bridge ga_guard dhcp-reply-steer
add counter bridge ga_guard to-host
add counter bridge ga_guard edge-to-endpoint
add counter bridge ga_guard endpoint-egress
add counter bridge ga_guard edge-unmapped
add map bridge ga_guard ports { type ifname : verdict; }
add map bridge ga_guard endpoints { type ifname : verdict; }
add map bridge ga_guard edges { type ifname : verdict; }
add set bridge ga_guard dhcp_paths { type ifname . ifname; }
add set bridge ga_guard dhcp_replies { typeof oifname . @th,288,48; }
add set bridge ga_guard rl_mac_spoof { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_mac_spoof
add set bridge ga_guard rl_ip_spoof { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_ip_spoof
add set bridge ga_guard rl_arp_spoof { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_arp_spoof
add set bridge ga_guard rl_dhcp_chaddr { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_dhcp_chaddr
add set bridge ga_guard rl_dhcp_server { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_dhcp_server
add set bridge ga_guard rl_ipv6_spoof { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_ipv6_spoof
add set bridge ga_guard rl_ipv6_ra { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_ipv6_ra
add set bridge ga_guard rl_ethertype { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_ethertype
add set bridge ga_guard rl_edge_to_endpoint { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_edge_to_endpoint
add set bridge ga_guard rl_endpoint_egress { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_endpoint_egress
add set bridge ga_guard rl_edge_dhcp_server { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_edge_dhcp_server
add set bridge ga_guard rl_edge_ra { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_edge_ra
add set bridge ga_guard rl_edge_service_claim { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_edge_service_claim
add set bridge ga_guard rl_edge_guest_claim { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_edge_guest_claim
add set bridge ga_guard rl_unguarded { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_unguarded
add set bridge ga_guard rl_to_host { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_to_host
add set bridge ga_guard rl_edge_unmapped { type ifname; flags dynamic; timeout 10s; }
add chain bridge ga_guard log_edge_unmapped
add chain bridge ga_guard prerouting { type filter hook prerouting priority -200; policy accept; }
add chain bridge ga_guard forward { type filter hook forward priority -200; policy accept; }
add chain bridge ga_guard input { type filter hook input priority -200; policy accept; }
add rule bridge ga_guard prerouting iifname vmap @ports comment "berth guard bf183ee464d8"
add rule bridge ga_guard prerouting iifname "gap*" counter name "unguarded" goto log_unguarded
add rule bridge ga_guard forward iifname "gae*" oifname != "gap*" iifname vmap @endpoints
add rule bridge ga_guard forward iifname "gae*" oifname != "gap*" counter name "endpoint-egress" goto log_endpoint_egress
add rule bridge ga_guard forward oifname "gae*" oifname vmap @endpoints
add rule bridge ga_guard forward oifname "gae*" counter name "edge-to-endpoint" goto log_edge_to_endpoint
add rule bridge ga_guard forward oifname "gap*" iifname != "gap*" iifname != "gae*" oifname vmap @edges
add rule bridge ga_guard forward oifname "gap*" iifname != "gap*" iifname != "gae*" counter name "edge-unmapped" goto log_edge_unmapped
add rule bridge ga_guard forward iifname "gap*" udp dport 67 iifname . oifname != @dhcp_paths counter name "dhcp-steer" drop
add rule bridge ga_guard forward oifname "gap*" udp sport 67 udp dport 68 oifname . @th,288,48 != @dhcp_replies counter name "dhcp-reply-steer" drop
add rule bridge ga_guard input iifname "gap*" meta pkttype host counter name "to-host" goto log_to_host
add rule bridge ga_guard input iifname "gap*" drop
add rule bridge ga_guard log_mac_spoof add @rl_mac_spoof { iifname limit rate 10/second burst 20 packets } log prefix "berth mac-spoof " group 63789
add rule bridge ga_guard log_mac_spoof drop
add rule bridge ga_guard log_ip_spoof add @rl_ip_spoof { iifname limit rate 10/second burst 20 packets } log prefix "berth ip-spoof " group 63789
add rule bridge ga_guard log_ip_spoof drop
add rule bridge ga_guard log_arp_spoof add @rl_arp_spoof { iifname limit rate 10/second burst 20 packets } log prefix "berth arp-spoof " group 63789
add rule bridge ga_guard log_arp_spoof drop
add rule bridge ga_guard log_dhcp_chaddr add @rl_dhcp_chaddr { iifname limit rate 10/second burst 20 packets } log prefix "berth dhcp-chaddr " group 63789
add rule bridge ga_guard log_dhcp_chaddr drop
add rule bridge ga_guard log_dhcp_server add @rl_dhcp_server { iifname limit rate 10/second burst 20 packets } log prefix "berth dhcp-server " group 63789
add rule bridge ga_guard log_dhcp_server drop
add rule bridge ga_guard log_ipv6_spoof add @rl_ipv6_spoof { iifname limit rate 10/second burst 20 packets } log prefix "berth ipv6-spoof " group 63789
add rule bridge ga_guard log_ipv6_spoof drop
add rule bridge ga_guard log_ipv6_ra add @rl_ipv6_ra { iifname limit rate 10/second burst 20 packets } log prefix "berth ipv6-ra " group 63789
add rule bridge ga_guard log_ipv6_ra drop
add rule bridge ga_guard log_ethertype add @rl_ethertype { iifname limit rate 10/second burst 20 packets } log prefix "berth ethertype " group 63789
add rule bridge ga_guard log_ethertype drop
add rule bridge ga_guard log_edge_to_endpoint add @rl_edge_to_endpoint { iifname limit rate 10/second burst 20 packets } log prefix "berth edge-to-endpoint " group 63789
add rule bridge ga_guard log_edge_to_endpoint drop
add rule bridge ga_guard log_endpoint_egress add @rl_endpoint_egress { iifname limit rate 10/second burst 20 packets } log prefix "berth endpoint-egress " group 63789
add rule bridge ga_guard log_endpoint_egress drop
add rule bridge ga_guard log_edge_dhcp_server add @rl_edge_dhcp_server { iifname limit rate 10/second burst 20 packets } log prefix "berth edge-dhcp-server " group 63789
add rule bridge ga_guard log_edge_dhcp_server drop
add rule bridge ga_guard log_edge_ra add @rl_edge_ra { iifname limit rate 10/second burst 20 packets } log prefix "berth edge-ra " group 63789
add rule bridge ga_guard log_edge_ra drop
add rule bridge ga_guard log_edge_service_claim add @rl_edge_service_claim { iifname limit rate 10/second burst 20 packets } log prefix "berth edge-service-claim " group 63789
add rule bridge ga_guard log_edge_service_claim drop
add rule bridge ga_guard log_edge_guest_claim add @rl_edge_guest_claim { iifname limit rate 10/second burst 20 packets } log prefix "berth edge-guest-claim " group 63789
add rule bridge ga_guard log_edge_guest_claim drop
add rule bridge ga_guard log_unguarded add @rl_unguarded { iifname limit rate 10/second burst 20 packets } log prefix "berth unguarded " group 63789
add rule bridge ga_guard log_unguarded drop
add rule bridge ga_guard log_to_host add @rl_to_host { iifname limit rate 10/second burst 20 packets } log prefix "berth to-host " group 63789
add rule bridge ga_guard log_to_host drop
add rule bridge ga_guard log_edge_unmapped add @rl_edge_unmapped { iifname limit rate 10/second burst 20 packets } log prefix "berth edge-unmapped " group 63789
add rule bridge ga_guard log_edge_unmapped drop
add counter bridge ga_guard gae1.edge-to-endpoint
add counter bridge ga_guard gae1.endpoint-egress
add counter bridge ga_guard gae1.edge-dhcp-server
add counter bridge ga_guard gae1.edge-ra
add counter bridge ga_guard gae1.edge-service-claim
add counter bridge ga_guard gae1.edge-guest-claim
add set bridge ga_guard hosts_gae1 { type ifname . ether_addr; }
add set bridge ga_guard addrs_gae1 { type ifname . ether_addr . ipv4_addr; }
add set bridge ga_guard macs_gae1 { type ether_addr; }
add set bridge ga_guard ips_gae1 { type ipv4_addr; }
add chain bridge ga_guard ep_gae1
add rule bridge ga_guard ep_gae1 iifname "gae1" counter name "gae1.endpoint-egress" goto log_endpoint_egress
add rule bridge ga_guard ep_gae1 ether type arp iifname . ether saddr @hosts_gae1 accept
add rule bridge ga_guard ep_gae1 ether type ip iifname . ether saddr . ip saddr @addrs_gae1 accept
add rule bridge ga_guard ep_gae1 ether type ip6 iifname . ether saddr @hosts_gae1 accept
add rule bridge ga_guard ep_gae1 counter name "gae1.edge-to-endpoint" goto log_edge_to_endpoint comment "berth guard f7fda07a07c4"
add chain bridge ga_guard edge_gae1
add rule bridge ga_guard edge_gae1 udp dport { 68, 546 } counter name "gae1.edge-dhcp-server" goto log_edge_dhcp_server
add rule bridge ga_guard edge_gae1 icmpv6 type { nd-router-advert, nd-redirect } counter name "gae1.edge-ra" goto log_edge_ra
add rule bridge ga_guard edge_gae1 ether type arp arp saddr ip { 10.9.0.254, 169.254.169.254 } counter name "gae1.edge-service-claim" goto log_edge_service_claim
add rule bridge ga_guard edge_gae1 ether type ip ip saddr { 10.9.0.254, 169.254.169.254 } counter name "gae1.edge-service-claim" goto log_edge_service_claim
add rule bridge ga_guard edge_gae1 ether saddr @macs_gae1 counter name "gae1.edge-guest-claim" goto log_edge_guest_claim
add rule bridge ga_guard edge_gae1 ether type arp arp saddr ether @macs_gae1 counter name "gae1.edge-guest-claim" goto log_edge_guest_claim
add rule bridge ga_guard edge_gae1 ether type arp arp saddr ip @ips_gae1 counter name "gae1.edge-guest-claim" goto log_edge_guest_claim
add rule bridge ga_guard edge_gae1 ether type ip ip saddr @ips_gae1 counter name "gae1.edge-guest-claim" goto log_edge_guest_claim
add rule bridge ga_guard edge_gae1 accept comment "berth guard c2aea257db29"
add element bridge ga_guard endpoints { "gae1" : jump ep_gae1 }
add counter bridge ga_guard gapa.mac-spoof
add counter bridge ga_guard gapa.ip-spoof
add counter bridge ga_guard gapa.arp-spoof
add counter bridge ga_guard gapa.dhcp-chaddr
add counter bridge ga_guard gapa.dhcp-server
add counter bridge ga_guard gapa.ipv6-spoof
add counter bridge ga_guard gapa.ipv6-ra
add counter bridge ga_guard gapa.ethertype
add chain bridge ga_guard port_gapa
add rule bridge ga_guard port_gapa ether saddr != 02:00:00:00:00:0a counter name "gapa.mac-spoof" goto log_mac_spoof
add rule bridge ga_guard port_gapa ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 02:00:00:00:00:0a arp saddr ip { 0.0.0.0, 10.9.0.10 } accept
add rule bridge ga_guard port_gapa ether type arp counter name "gapa.arp-spoof" goto log_arp_spoof
add rule bridge ga_guard port_gapa ether type ip ip saddr != { 0.0.0.0, 10.9.0.10 } counter name "gapa.ip-spoof" goto log_ip_spoof
add rule bridge ga_guard port_gapa ether type ip udp sport 67 counter name "gapa.dhcp-server" goto log_dhcp_server
add rule bridge ga_guard port_gapa ether type ip udp sport 68 udp dport 67 ip frag-off & 0x3fff == 0 @th,288,48 0x02000000000a accept
add rule bridge ga_guard port_gapa ether type ip udp dport 67 counter name "gapa.dhcp-chaddr" goto log_dhcp_chaddr
add rule bridge ga_guard port_gapa ether type ip ip saddr 10.9.0.10 accept
add rule bridge ga_guard port_gapa ether type ip counter name "gapa.ip-spoof" goto log_ip_spoof
add rule bridge ga_guard port_gapa ether type ip6 icmpv6 type { nd-router-advert, nd-redirect } counter name "gapa.ipv6-ra" goto log_ipv6_ra
add rule bridge ga_guard port_gapa ether type ip6 udp sport 547 counter name "gapa.dhcp-server" goto log_dhcp_server
add rule bridge ga_guard port_gapa ether type ip6 icmpv6 type nd-neighbor-advert @th,64,128 != { 0x20010db800000000000000000000000a, 0xfe80000000000000000000fffe00000a } counter name "gapa.ipv6-spoof" goto log_ipv6_spoof
add rule bridge ga_guard port_gapa ether type ip6 ip6 saddr { 2001:db8::a, fe80::ff:fe00:a } accept
add rule bridge ga_guard port_gapa ether type ip6 ip6 saddr :: icmpv6 type nd-neighbor-solicit @th,64,128 { 0x20010db800000000000000000000000a, 0xfe80000000000000000000fffe00000a } accept
add rule bridge ga_guard port_gapa ether type ip6 ip6 saddr :: icmpv6 type { mld-listener-report, mld2-listener-report } accept
add rule bridge ga_guard port_gapa ether type ip6 counter name "gapa.ipv6-spoof" goto log_ipv6_spoof
add rule bridge ga_guard port_gapa counter name "gapa.ethertype" goto log_ethertype comment "berth guard d905b93ac4db"
add element bridge ga_guard ports { "gapa" : jump port_gapa }
add element bridge ga_guard dhcp_paths { "gapa" . "gae1" }
add element bridge ga_guard dhcp_replies { "gapa" . 0x02000000000a }
add element bridge ga_guard edges { "gapa" : jump edge_gae1 }
add element bridge ga_guard hosts_gae1 { "gapa" . 02:00:00:00:00:0a }
add element bridge ga_guard addrs_gae1 { "gapa" . 02:00:00:00:00:0a . 10.9.0.10, "gapa" . 02:00:00:00:00:0a . 0.0.0.0 }
add element bridge ga_guard macs_gae1 { 02:00:00:00:00:0a }
add element bridge ga_guard ips_gae1 { 10.9.0.10 }
add counter bridge ga_guard gapb.mac-spoof
add counter bridge ga_guard gapb.ip-spoof
add counter bridge ga_guard gapb.arp-spoof
add counter bridge ga_guard gapb.dhcp-chaddr
add counter bridge ga_guard gapb.dhcp-server
add counter bridge ga_guard gapb.ipv6-spoof
add counter bridge ga_guard gapb.ipv6-ra
add counter bridge ga_guard gapb.ethertype
add chain bridge ga_guard port_gapb
add rule bridge ga_guard port_gapb ether saddr != 02:00:00:00:00:0b counter name "gapb.mac-spoof" goto log_mac_spoof
add rule bridge ga_guard port_gapb ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether 02:00:00:00:00:0b arp saddr ip { 0.0.0.0, 10.9.0.11 } accept
add rule bridge ga_guard port_gapb ether type arp counter name "gapb.arp-spoof" goto log_arp_spoof
add rule bridge ga_guard port_gapb ether type ip ip saddr != { 0.0.0.0, 10.9.0.11 } counter name "gapb.ip-spoof" goto log_ip_spoof
add rule bridge ga_guard port_gapb ether type ip udp sport 67 counter name "gapb.dhcp-server" goto log_dhcp_server
add rule bridge ga_guard port_gapb ether type ip udp sport 68 udp dport 67 ip frag-off & 0x3fff == 0 @th,288,48 0x02000000000b accept
add rule bridge ga_guard port_gapb ether type ip udp dport 67 counter name "gapb.dhcp-chaddr" goto log_dhcp_chaddr
add rule bridge ga_guard port_gapb ether type ip ip saddr 10.9.0.11 accept
add rule bridge ga_guard port_gapb ether type ip counter name "gapb.ip-spoof" goto log_ip_spoof
add rule bridge ga_guard port_gapb ether type ip6 icmpv6 type { nd-router-advert, nd-redirect } counter name "gapb.ipv6-ra" goto log_ipv6_ra
add rule bridge ga_guard port_gapb ether type ip6 udp sport 547 counter name "gapb.dhcp-server" goto log_dhcp_server
add rule bridge ga_guard port_gapb ether type ip6 icmpv6 type nd-neighbor-advert @th,64,128 != { 0xfe80000000000000000000fffe00000b } counter name "gapb.ipv6-spoof" goto log_ipv6_spoof
add rule bridge ga_guard port_gapb ether type ip6 ip6 saddr { fe80::ff:fe00:b } accept
add rule bridge ga_guard port_gapb ether type ip6 ip6 saddr :: icmpv6 type nd-neighbor-solicit @th,64,128 { 0xfe80000000000000000000fffe00000b } accept
add rule bridge ga_guard port_gapb ether type ip6 ip6 saddr :: icmpv6 type { mld-listener-report, mld2-listener-report } accept
add rule bridge ga_guard port_gapb ether type ip6 counter name "gapb.ipv6-spoof" goto log_ipv6_spoof
add rule bridge ga_guard port_gapb counter name "gapb.ethertype" goto log_ethertype comment "berth guard fe38275fdec9"
add element bridge ga_guard ports { "gapb" : jump port_gapb }
add element bridge ga_guard dhcp_paths { "gapb" . "gae1" }
add element bridge ga_guard dhcp_replies { "gapb" . 0x02000000000b }
add element bridge ga_guard edges { "gapb" : jump edge_gae1 }
add element bridge ga_guard hosts_gae1 { "gapb" . 02:00:00:00:00:0b }
add element bridge ga_guard addrs_gae1 { "gapb" . 02:00:00:00:00:0b . 10.9.0.11, "gapb" . 02:00:00:00:00:0b . 0.0.0.0 }
add element bridge ga_guard macs_gae1 { 02:00:00:00:00:0b }
add element bridge ga_guard ips_gae1 { 10.9.0.11 }
`;

t.test('golden script for two ports and one endpoint', async (t) => {
  t.equal(renderGuard(names, twoPorts), GOLDEN);
  const reversed = { ...twoPorts, ports: [...twoPorts.ports].reverse() };
  t.equal(renderGuard(names, reversed), GOLDEN, 'input order does not change the text');
});

t.test('chaddr sits 36 bytes into the UDP header, 6 bytes long', async (t) => {
  // 8-byte UDP header, then BOOTP op(1) htype(1) hlen(1) hops(1) xid(4) secs(2) flags(2) ciaddr yiaddr siaddr giaddr(16).
  const bootpBeforeChaddr = 1 + 1 + 1 + 1 + 4 + 2 + 2 + 4 * 4;
  t.equal(bootpBeforeChaddr, 28);
  t.same(chaddrMatch(), { offset: (8 + 28) * 8, length: 48 });
  t.equal(chaddrMatch().offset, 288);
  t.match(GOLDEN, /@th,288,48 0x02000000000a accept/);
});

t.test('link-local addresses come from the MAC by modified EUI-64', async (t) => {
  t.equal(linkLocalFromMac('52:54:00:12:34:56'), 'fe80::5054:ff:fe12:3456');
  t.equal(
    linkLocalFromMac('02:00:00:00:00:0a'),
    'fe80::ff:fe00:a',
    'the U/L bit flips to 0 and zero groups fold',
  );
  t.equal(ipv6Hex('fe80::ff:fe00:a'), '0xfe80000000000000000000fffe00000a');
  t.equal(canonicalIPv6('2001:0DB8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'the first longest zero run folds');
  t.equal(canonicalIPv6('::'), '::');
  t.equal(canonicalIPv6('1::'), '1::');
  for (const bad of [
    '1:2:3:4:5:6:7:8:9',
    '1::2::3',
    'fe80::1%eth0',
    '::ffff:1.2.3.4',
    'g::1',
    '1:2:3:4:5:6:7',
  ]) {
    t.equal(parseIPv6(bad), undefined, bad);
  }
  t.throws(() => linkLocalFromMac('02:00:00:00:00'), /not a MAC address/);
});

t.test('fingerprints follow what the rules say', async (t) => {
  const a = twoPorts.ports[1] as GuardState['ports'][number];
  t.equal(portFingerprint(a), portFingerprint({ ...a, network: 'other' }), 'the network is not in the rules');
  t.not(portFingerprint(a), portFingerprint({ ...a, ipv4: '10.9.0.12' }));
  t.not(portFingerprint(a), portFingerprint({ ...a, ipv6: [] }));
  t.not(
    skeletonFingerprint(names),
    skeletonFingerprint(new Names('gb')),
    'the owned prefix is part of the skeleton',
  );
});

t.test('everything spliced into nft text is checked first', async (t) => {
  const port = twoPorts.ports[0] as GuardState['ports'][number];
  const render = (p: object, endpoints = twoPorts.endpoints) =>
    renderGuard(names, { ports: [{ ...port, ...p }], endpoints });
  t.throws(() => render({ ifname: 'eth0' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    message: /ports\[0\]\.ifname: "eth0" is not a guest port name owned by berth \(want "gap\.\.\."/,
  });
  const fieldOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return (err as { field?: string }).field;
    }
    return 'no error';
  };
  t.equal(
    fieldOf(() => render({ ifname: 'gap"; flush ruleset' })),
    'ports[0].ifname',
  );
  t.equal(
    fieldOf(() => render({ ifname: 'gap0123456789abc' })),
    'ports[0].ifname',
    'longer than 15',
  );
  t.equal(
    fieldOf(() => render({ mac: '02:00:00:00:00:0B' })),
    'ports[0].mac',
  );
  t.equal(
    fieldOf(() => render({ ipv4: '0.0.0.0' })),
    'ports[0].ipv4',
  );
  t.equal(
    fieldOf(() => render({ ipv6: ['fe80::1', 'nope'] })),
    'ports[0].ipv6[1]',
  );
  t.equal(
    fieldOf(() => render({}, [{ network: 'n1', bridge: 'gab1', ifname: 'gap1', serviceIp: '10.9.0.254' }])),
    'endpoints[0].ifname',
  );
  t.throws(() => renderGuard(names, { ports: [port, port], endpoints: [] }), /"gapb" is listed twice/);
  t.equal(
    fieldOf(() => render({}, [{ network: 'n1', bridge: 'gab1', ifname: 'gae1', serviceIp: '10.9.0' }])),
    'endpoints[0].serviceIp',
  );
  t.notMatch(render({}, []), /dhcp_paths \{ "gapb"/, 'a network without an endpoint gets no DHCP path');
  t.notMatch(render({}, []), /edges \{ "gapb"|_gae1/, 'nor edge elements: the fallback drop covers its port');
});

t.test("every drop counts, then logs through its reason's rate-limited chain", async (t) => {
  t.equal(LOG_PREFIX, 'berth ');
  t.same(
    [...GUARD_REASONS].sort(),
    [...new Set([...DROP_REASONS, ...EDGE_REASONS, ...TABLE_COUNTERS])].sort(),
  );
  t.equal(
    names.logGroup(),
    1024 + (Number.parseInt(createHash('sha256').update('ga').digest('hex').slice(0, 4), 16) % 64000),
  );
  t.not(names.logGroup(), new Names('gb').logGroup(), 'each prefix logs to its own group');
  const drops = GOLDEN.split('\n').filter((l) => / drop( comment|$)/.test(l) || / goto log_/.test(l));
  for (const line of drops) {
    if (/ log_\w+ drop$/.test(line) || /input iifname "gap\*" drop$/.test(line)) continue;
    // Routine drops (broadcast copies not sent where they are not needed) only count.
    if (/counter name "dhcp(-reply)?-steer" drop$/.test(line)) continue;
    t.match(line, /counter name "[^"]+" goto log_[a-z0-9_]+( comment "berth guard [0-9a-f]+")?$/, line);
  }
  for (const reason of GUARD_REASONS) {
    const r = reason.replaceAll('-', '_');
    if (ROUTINE_REASONS.has(reason)) {
      t.notMatch(GOLDEN, `log_${r}`, `${reason} is routine: counted, never logged`);
      continue;
    }
    t.match(GOLDEN, `add set bridge ga_guard rl_${r} { type ifname; flags dynamic; timeout 10s; }`);
    t.match(
      GOLDEN,
      `add rule bridge ga_guard log_${r} add @rl_${r} { iifname limit rate 10/second burst 20 packets } log prefix "berth ${reason} " group ${names.logGroup()}\nadd rule bridge ga_guard log_${r} drop\n`,
    );
  }
});
