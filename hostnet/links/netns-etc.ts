// Each berth namespace gets its own /etc/netns/NAME/resolv.conf. `ip netns
// exec` bind-mounts the files there over /etc in a private mount namespace,
// so a DHCP client's script run inside a guest (busybox's default script,
// dhclient-script) rewrites the guest's resolver file. Without it the script
// writes the host's /etc/resolv.conf: a netns guest could take the
// hypervisor's DNS away (seen here: an empty lease emptied the host file).
import { access, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const NETNS_ETC_ROOT = '/etc/netns';

const RESOLV_HEADER = "# berth: this namespace's own resolver file; its DHCP client writes here.\n";

export class NetnsEtc {
  constructor(
    readonly root: string = NETNS_ETC_ROOT,
    private readonly hostResolv = '/etc/resolv.conf',
  ) {}

  dir(netns: string): string {
    if (!/^[\w.-]+$/.test(netns) || netns === '.' || netns === '..')
      throw new Error(`bad network namespace name "${netns}"`);
    return join(this.root, netns);
  }

  /**
   * Creates the namespace's resolver file; one that exists (a guest's lease)
   * is kept. A host without /etc/resolv.conf gets none: iproute2 binds over
   * the host file, and with nothing to bind over every `ip -n` would warn.
   */
  async ensure(netns: string): Promise<void> {
    const dir = this.dir(netns);
    try {
      await access(this.hostResolv);
    } catch {
      return;
    }
    await mkdir(dir, { recursive: true, mode: 0o755 });
    try {
      await writeFile(join(dir, 'resolv.conf'), RESOLV_HEADER, { flag: 'wx', mode: 0o644 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }

  /** The namespaces that have a folder here; none when the root does not exist. */
  async list(): Promise<string[]> {
    try {
      return (await readdir(this.root, { withFileTypes: true }))
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Succeeds when the folder is already gone. */
  async remove(netns: string): Promise<void> {
    await rm(this.dir(netns), { recursive: true, force: true });
  }
}
