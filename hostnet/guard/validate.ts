// Every value spliced into the guard's nft text is checked here first, so
// nothing unchecked (a name with a quote, a malformed address) reaches a script.
import { BerthError } from '../../base/errors.js';
import { isIPv4, isMac } from '../ipv4.js';
import { IFNAMSIZ, type Names } from '../names.js';
import { canonicalIPv6 } from './ipv6.js';
import type { GuardState } from './state.js';

const IFNAME = /^[a-z0-9][a-z0-9_-]*$/;

function checkIfname(names: Names, ifname: string, kind: 'p' | 'e', field: string): void {
  const ok = IFNAME.test(ifname) && ifname.length <= IFNAMSIZ && ifname.startsWith(`${names.prefix}${kind}`);
  if (!ok) {
    const want = kind === 'p' ? 'a guest port' : 'an endpoint veth';
    throw new BerthError(
      'BERTH_ERR_INVALID_ARGUMENT',
      `${field}: "${ifname}" is not ${want} name owned by berth (want "${names.prefix}${kind}..." of at most ${IFNAMSIZ} lower-case letters, digits, "-" or "_")`,
      { field },
    );
  }
}

function invalid(field: string, reason: string): BerthError {
  return new BerthError('BERTH_ERR_INVALID_ARGUMENT', `${field}: ${reason}`, { field });
}

/**
 * Checks every value that will be spliced into nft text (nothing unchecked reaches the script) and
 * returns the state with ports and endpoints sorted by ifname.
 */
export function validateState(names: Names, state: GuardState): GuardState {
  const seen = new Set<string>();
  state.ports.forEach((p, i) => {
    const f = `ports[${i}]`;
    checkIfname(names, p.ifname, 'p', `${f}.ifname`);
    if (seen.has(p.ifname)) throw invalid(`${f}.ifname`, `"${p.ifname}" is listed twice`);
    seen.add(p.ifname);
    if (!isMac(p.mac))
      throw invalid(`${f}.mac`, `"${p.mac}" is not a MAC address (want aa:bb:cc:dd:ee:ff, lower case)`);
    if (!isIPv4(p.ipv4) || p.ipv4 === '0.0.0.0')
      throw invalid(`${f}.ipv4`, `"${p.ipv4}" is not a usable IPv4 address`);
    (p.ipv6 ?? []).forEach((a, j) => {
      if (!canonicalIPv6(a))
        throw invalid(`${f}.ipv6[${j}]`, `"${a}" is not an IPv6 address (hex groups only)`);
    });
  });
  const endpoints = new Set<string>();
  state.endpoints.forEach((e, i) => {
    checkIfname(names, e.ifname, 'e', `endpoints[${i}].ifname`);
    if (endpoints.has(e.ifname)) throw invalid(`endpoints[${i}].ifname`, `"${e.ifname}" is listed twice`);
    endpoints.add(e.ifname);
    if (!isIPv4(e.serviceIp) || e.serviceIp === '0.0.0.0')
      throw invalid(`endpoints[${i}].serviceIp`, `"${e.serviceIp}" is not a usable IPv4 address`);
  });
  const byName = <T extends { ifname: string }>(a: T, b: T) =>
    a.ifname < b.ifname ? -1 : a.ifname > b.ifname ? 1 : 0;
  return { ports: [...state.ports].sort(byName), endpoints: [...state.endpoints].sort(byName) };
}
