// A netns guest that boots like a cloud guest: a long-running udhcpc (retrying
// every second until it is served), then metadata over the option 121 route.
// The fault tests use it to check that a running guest keeps its lease and is
// still served after berthd was killed, or while its disk is full.
import type { Test } from 'tap';
import { Background, lastEvent } from './dhcp_lab.js';
import { sh } from './hostnet_lab.js';
import { curl } from './metadata_lab.js';

export interface GuestIdentity {
  name: string;
  id: string;
  ip: string;
  netns: string;
}

export class DhcpGuest {
  readonly client: Background;

  constructor(
    t: Test,
    readonly g: GuestIdentity,
    script: string,
  ) {
    // -A 1: after 3 unanswered DISCOVERs, try again in 1 s (default 20 s), as a guest whose server restarts must.
    this.client = new Background(t, g.netns, [
      'udhcpc',
      '-f',
      '-i',
      'eth0',
      '-t',
      '3',
      '-T',
      '1',
      '-A',
      '1',
      '-s',
      script,
    ]);
  }

  /** The IP of the last bound/renew event, if any. */
  leased(): string | undefined {
    return lastEvent(this.client.out).ip;
  }

  async bound(ms: number): Promise<boolean> {
    return (await this.client.waitFor(/serverid=.*\n/, ms)) !== undefined;
  }

  /** SIGUSR1 (a unicast REQUEST for the held IP) until a renew event comes back; its fields. */
  async renew(ms: number): Promise<Record<string, string> | undefined> {
    const mark = this.client.out.length;
    const until = Date.now() + ms;
    while (Date.now() < until) {
      this.client.signal('SIGUSR1');
      if (await this.client.waitFor(/event=renew[\s\S]*?serverid=.*\n/, 1500, mark))
        return lastEvent(this.client.out.slice(mark));
    }
    return undefined;
  }

  /** GET instance-id until answered 200 (an endpoint may be starting); the body, or the last failure. */
  async instanceId(ms: number): Promise<string> {
    const until = Date.now() + ms;
    let last = '';
    for (;;) {
      try {
        const r = await curl(this.g.netns, '/latest/meta-data/instance-id');
        if (r.status === 200) return r.body;
        last = `HTTP ${r.status}: ${r.body}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > until) return `no answer: ${last}`;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The IPv4 address on eth0 right now, read from the host. */
  async address(): Promise<string | undefined> {
    const out = JSON.parse(await sh('ip', ['-n', this.g.netns, '-j', '-4', 'addr', 'show', 'eth0'])) as {
      addr_info: { local: string }[];
    }[];
    return out[0]?.addr_info[0]?.local;
  }
}
