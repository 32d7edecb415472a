#!/usr/bin/env node
// The endpoint process: started by berthd under `ip netns exec <endpoint-ns>`,
// so its sockets hear only this network. It relays DHCP datagrams to berthd
// and serves metadata. It is detached from berthd and listens on a control
// socket, so a restarting berthd leaves it serving and the next one adopts it.
//
// Usage: main.js --control PATH --network NAME [--orphan-seconds N]
import { createSocket, type Socket } from 'node:dgram';
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { buildId } from './build-id.js';
import { ControlServer } from './control-server.js';
import { startMetadataServer } from './metadata-server.js';
import type { EndpointConfig, Hello, Notice } from './protocol.js';
import { RpcClient } from './rpc-client.js';

type Level = 'info' | 'warn' | 'error';

class Endpoint {
  private config: EndpointConfig | undefined;
  private ports: { dhcp: number; metadata: number } | undefined;
  private dhcp: Socket | undefined;
  private readonly noticeListeners: ((msg: Notice) => void)[] = [];
  private readonly controllerListeners: (() => void)[] = [];
  /** Read once: after an upgrade replaces the files, this process still runs the old code. */
  private readonly build = buildId();
  readonly control: ControlServer;
  readonly rpc: RpcClient;

  constructor(
    private readonly network: string,
    control: string,
    orphanSeconds: number,
  ) {
    this.rpc = new RpcClient((msg) => this.control.send(msg));
    this.control = new ControlServer({
      path: control,
      orphanSeconds,
      onController: () => this.greet(),
      onMessage: (msg) => {
        if (msg.t === 'result') this.rpc.settle(msg);
        else this.notice(msg);
      },
      onOrphanTimeout: () => {
        this.log('warn', `no berthd for ${orphanSeconds} s; exiting`);
        void this.exit(0);
      },
    });
  }

  /** While no berthd listens, logs go to stderr (the endpoint's log file). */
  log(level: Level, msg: string, fields?: Record<string, unknown>): void {
    if (this.control.send({ t: 'log', level, msg, ...(fields ? { fields } : {}) })) return;
    const line = { time: new Date().toISOString(), level, network: this.network, msg, ...fields };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  }

  private greet(): void {
    const hello: Hello = {
      t: 'hello',
      pid: process.pid,
      build: this.build,
      netnsInode: statSync('/proc/self/ns/net').ino,
    };
    if (this.config) hello.config = this.config;
    if (this.ports) hello.ports = this.ports;
    this.control.send(hello);
    this.rpc.resend();
    for (const listener of this.controllerListeners) listener();
  }

  onNotice(listener: (msg: Notice) => void): void {
    this.noticeListeners.push(listener);
  }

  /** Runs listener each time a berthd connects (after the hello). */
  onController(listener: () => void): void {
    this.controllerListeners.push(listener);
  }

  get connected(): boolean {
    return this.control.connected;
  }

  private notice(msg: Notice): void {
    switch (msg.t) {
      case 'config':
        if (this.config) {
          this.log('error', 'endpoint already configured; berthd must replace it, not reconfigure it');
          return;
        }
        this.config = msg.config;
        this.start(msg.config).catch((err: Error) => {
          this.log('error', 'endpoint could not start', { err: err.message });
          void this.exit(1);
        });
        return;
      case 'dhcp-send':
        this.dhcp?.send(msg.data, msg.port, msg.address);
        return;
      case 'exit':
        void this.exit(0);
        return;
      default:
        for (const listener of this.noticeListeners) listener(msg);
    }
  }

  private async start(config: EndpointConfig): Promise<void> {
    const dhcp = createSocket({ type: 'udp4', reuseAddr: true });
    this.dhcp = dhcp;
    // With no berthd connected the datagram is dropped; DHCP clients retry.
    dhcp.on('message', (data, rinfo) =>
      this.control.send({ t: 'dhcp-packet', data, address: rinfo.address, port: rinfo.port }),
    );
    dhcp.on('error', (err) => this.log('error', 'DHCP socket failed', { err: err.message }));
    await new Promise<void>((resolve) => dhcp.bind(config.dhcpPort, '0.0.0.0', () => resolve()));
    dhcp.setBroadcast(true);
    const metadata = await startMetadataServer(config, this.rpc, this, (level, msg, fields) =>
      this.log(level, msg, fields),
    );
    this.ports = { dhcp: dhcp.address().port, metadata };
    this.control.send({ t: 'ready', dhcpPort: this.ports.dhcp, metadataPort: metadata });
  }

  async exit(code: number): Promise<never> {
    await this.control.close().catch(() => undefined);
    process.exit(code);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      control: { type: 'string' },
      network: { type: 'string' },
      'orphan-seconds': { type: 'string', default: '600' },
    },
  });
  const orphanSeconds = Number(values['orphan-seconds']);
  if (!values.control || !values.network || !Number.isInteger(orphanSeconds) || orphanSeconds < 0) {
    process.stderr.write(
      'berth endpoint: usage: main.js --control PATH --network NAME [--orphan-seconds N]; started by berthd\n',
    );
    process.exit(2);
  }
  const endpoint = new Endpoint(values.network, values.control, orphanSeconds);
  process.on('SIGTERM', () => void endpoint.exit(0));
  if (!(await endpoint.control.listen())) {
    endpoint.log('warn', `another endpoint already answers on ${values.control}; exiting`);
    process.exit(0);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`berth endpoint: ${err.message}\n`);
  process.exit(1);
});
