// A real etcd cluster on loopback for tests and the cluster lab: Debian's
// etcd-server binary, one process per member, each with its own data dir and
// ports. Members can be killed (-9) and started again to play out faults.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const ETCD_BIN = '/usr/bin/etcd';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess | undefined;
  log: string[];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Client TLS for the members: their certificate, and the CA client certificates must chain to. */
export interface EtcdTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export class EtcdMembers {
  readonly members: EtcdMember[] = [];

  private constructor(
    private readonly dir: string,
    private readonly token: string,
    private readonly tls: EtcdTls | undefined,
  ) {}

  /** Starts `count` members under dir and waits until the cluster elects a leader and answers. */
  static async start(
    dir: string,
    count = 3,
    token = `berth-${process.pid}`,
    tls?: EtcdTls,
  ): Promise<EtcdMembers> {
    const set = new EtcdMembers(dir, token, tls);
    for (let i = 0; i < count; i++) {
      const name = `m${i}`;
      set.members.push({
        name,
        clientUrl: `${tls ? 'https' : 'http'}://127.0.0.1:${await freePort()}`,
        peerUrl: `http://127.0.0.1:${await freePort()}`,
        dataDir: join(dir, name),
        proc: undefined,
        log: [],
      });
    }
    try {
      await Promise.all(set.members.map((m) => set.launch(m, 'new')));
      await set.waitHealthy(30_000);
    } catch (err) {
      await set.stop();
      throw err;
    }
    return set;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  private async launch(m: EtcdMember, state: 'new' | 'existing'): Promise<void> {
    await mkdir(m.dataDir, { recursive: true, mode: 0o700 });
    const initial = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const proc = spawn(
      ETCD_BIN,
      [
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=${m.clientUrl}`,
        `--advertise-client-urls=${m.clientUrl}`,
        `--listen-peer-urls=${m.peerUrl}`,
        `--initial-advertise-peer-urls=${m.peerUrl}`,
        `--initial-cluster=${initial}`,
        `--initial-cluster-state=${state}`,
        `--initial-cluster-token=${this.token}`,
        // Loopback round trips are sub-millisecond; these keep a leader
        // election after kill -9 near one second, as on a quiet LAN.
        '--heartbeat-interval=100',
        '--election-timeout=1000',
        '--logger=zap',
        '--log-level=warn',
        ...(this.tls
          ? [
              `--cert-file=${this.tls.certFile}`,
              `--key-file=${this.tls.keyFile}`,
              `--trusted-ca-file=${this.tls.caFile}`,
              '--client-cert-auth',
            ]
          : []),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    m.proc = proc;
    proc.stderr?.on('data', (d: Buffer) => {
      m.log.push(d.toString());
      if (m.log.length > 200) m.log.shift();
    });
    proc.once('exit', () => {
      if (m.proc === proc) m.proc = undefined;
    });
  }

  /** Waits until every running member reports healthy through etcd's /health. */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const running = this.members.filter((m) => m.proc);
      const answers = await Promise.all(
        running.map((m) =>
          this.health(m.clientUrl).catch((err: Error) => {
            last = `${m.name}: ${err.message}`;
            return false;
          }),
        ),
      );
      if (answers.length > 0 && answers.every(Boolean)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    const logs = this.members.map((m) => `${m.name}: ${m.log.slice(-3).join('')}`).join('\n');
    throw new Error(`etcd did not become healthy in ${timeoutMs} ms (${last})\n${logs}`);
  }

  /** etcd's /health, with the client certificate when the members want one. */
  private async health(url: string): Promise<boolean> {
    if (!this.tls) {
      const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      return ((await r.json()) as { health?: string }).health === 'true';
    }
    const [ca, cert, key] = await Promise.all(
      [this.tls.caFile, this.tls.certFile, this.tls.keyFile].map((f) => readFile(f)),
    );
    return new Promise((resolve, reject) => {
      const req = httpsGet(`${url}/health`, { ca, cert, key, timeout: 1000 }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () => resolve(body.includes('"health":"true"')));
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('timeout')));
    });
  }

  /** The member that is leader now, asked of etcd itself. */
  async leader(): Promise<EtcdMember> {
    for (const m of this.members.filter((x) => x.proc)) {
      const res = await fetch(`${m.clientUrl}/v3/maintenance/status`, {
        method: 'POST',
        body: '{}',
        signal: AbortSignal.timeout(2000),
      }).catch(() => undefined);
      if (!res?.ok) continue;
      const st = (await res.json()) as { header: { member_id: string }; leader: string };
      if (st.header.member_id === st.leader) return m;
    }
    throw new Error('no etcd member says it is the leader');
  }

  async kill(m: EtcdMember, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = m.proc;
    if (!proc) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await gone;
  }

  /** Starts a stopped member again on its old data dir and ports. */
  async restart(m: EtcdMember): Promise<void> {
    if (m.proc) return;
    await this.launch(m, 'existing');
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m, 'SIGKILL')));
    await rm(this.dir, { recursive: true, force: true });
  }
}
