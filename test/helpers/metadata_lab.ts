// Metadata acceptance helpers: netns guests made with berthctl (with metadata
// inputs), addressed by hand, and curl run inside them against 169.254.169.254.
import { execFile } from 'node:child_process';
import type { Instance } from '../../agent/api/types.js';
import type { Guest, Lab } from './hostnet_lab.js';

export const MD = 'http://169.254.169.254';

/** Creates a netns instance with extra `instance create` flags, then gives it its IP and the metadata route. */
export async function mdGuest(
  lab: Lab,
  name: string,
  network: string,
  flags: string[] = [],
  len = 24,
): Promise<Guest & { instance: Instance }> {
  const i = await lab.json<Instance>([
    'instance',
    'create',
    name,
    '--network',
    network,
    '--runtime',
    'netns',
    ...flags,
  ]);
  const nic = i.nics[0];
  if (!nic || !i.netns) throw new Error(`instance ${name} has no NIC or netns`);
  await lab.execOk(name, ['ip', 'addr', 'add', `${nic.ip}/${len}`, 'dev', 'eth0']);
  await lab.execOk(name, ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
  return { name, id: i.id, mac: nic.mac, ip: nic.ip, port: nic.port, netns: i.netns, network, instance: i };
}

export interface HttpResult {
  status: number;
  body: string;
  headers: string;
}

/** curl inside a namespace; never throws for HTTP errors. Headers come back through `-i` (Node's child stdio are sockets, which /dev/stderr cannot reopen). */
export function curl(netns: string, path: string, args: string[] = []): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      ['netns', 'exec', netns, 'curl', '-sS', '-i', '-m', '5', ...args, `${MD}${path}`],
      { encoding: 'utf8' },
      (err, stdout, stderr) => {
        const split = stdout.indexOf('\r\n\r\n');
        const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(stdout)?.[1] ?? 0);
        if (!status) return reject(new Error(`curl ${path} in ${netns}: ${stderr || err?.message}`));
        resolve({ status, headers: stdout.slice(0, split), body: stdout.slice(split + 4) });
      },
    );
  });
}
