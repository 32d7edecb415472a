// The host half of an instance: plugging it in (guard, security groups, then
// the port itself, a tap of a libvirt domain or a netns veth) and taking it
// out again. A plug registers an undo step for each part on the caller's
// reverter, so a create that fails later leaves nothing on the host.
import type { NetnsGuestSpec, NetworkDriver, PortSpec } from '../../hostnet/driver.js';
import type { Reverter } from '../../hostnet/reverter.js';
import type { Instance, Nic } from '../api/types.js';
import type { LibvirtRuntime } from './libvirt-runtime.js';
import type { NetworkRecord, NetworkService } from './networks.js';

export interface PlugDeps {
  driver: NetworkDriver;
  networks: NetworkService;
  libvirt?: LibvirtRuntime | undefined;
  /** Puts the instance's security groups on the host now; throws when it could not. */
  enforceSecgroups?: ((rec: Instance) => Promise<void>) | undefined;
}

export type Boot = Awaited<ReturnType<LibvirtRuntime['prepare']>>;

export function portSpecOf(rec: Instance, nic: Nic): PortSpec {
  return { ifname: nic.port, instance: rec.id, network: nic.network, mac: nic.mac, ip: nic.ip };
}

/** A netns instance's namespace and port; undefined for a libvirt one. */
export function netnsGuestOf(rec: Instance): NetnsGuestSpec | undefined {
  const nic = rec.nics[0];
  if (rec.runtime !== 'netns' || !rec.netns || !nic) return undefined;
  return { netns: rec.netns, port: portSpecOf(rec, nic) };
}

/** Plugs `rec` into `network`: `boot` for a libvirt domain, none for a netns guest. */
export async function plugInstance(
  d: PlugDeps,
  rec: Instance,
  network: NetworkRecord,
  boot: Boot | undefined,
  reverter: Reverter,
): Promise<void> {
  const port = portSpecOf(rec, rec.nics[0] as Nic);
  await d.driver.guardPort(port);
  reverter.add(`guard of port ${port.ifname}`, () => d.driver.unguardPort(port.ifname));
  // Like the guard, a guest's groups close its port before the port exists.
  if (rec.secgroups?.length) await d.enforceSecgroups?.(rec);
  if (boot && d.libvirt) {
    const nic = { bridge: d.driver.placement(network).bridge, mtu: network.mtu };
    await d.libvirt.instantiate(rec, boot.image, nic, reverter);
    // The tap exists once the domain runs: pin the guest's MAC to it.
    await d.driver.bindPort(port);
  } else {
    const guest = netnsGuestOf(rec) as NetnsGuestSpec;
    await d.driver.ensureNetnsGuest(guest, d.networks.spec(network));
    reverter.add(`netns guest ${guest.netns}`, () => d.driver.removeNetnsGuest(guest));
  }
}

/** Takes everything plugInstance put on the host away; what is already gone counts as removed. */
export async function unplugInstance(d: PlugDeps, rec: Instance): Promise<void> {
  const guest = netnsGuestOf(rec);
  if (guest) await d.driver.removeNetnsGuest(guest);
  if (rec.runtime === 'libvirt' && d.libvirt) await d.libvirt.teardown(rec);
  for (const nic of rec.nics) await d.driver.unguardPort(nic.port);
}
