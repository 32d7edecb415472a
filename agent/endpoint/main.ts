#!/usr/bin/env node
// The endpoint process: started by berthd under `ip netns exec <endpoint-ns>`,
// so its sockets hear only this network. It relays DHCP datagrams to berthd
// and serves metadata; it exits when berthd goes away.
import { createSocket } from 'node:dgram';
import { startMetadataServer } from './metadata-server.js';
import type { ChildMessage, EndpointConfig, ParentMessage } from './protocol.js';
import { RpcClient } from './rpc-client.js';

function send(msg: ChildMessage): void {
  process.send?.(msg);
}

function log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
  send({ t: 'log', level, msg, ...(fields ? { fields } : {}) });
}

async function run(config: EndpointConfig, rpc: RpcClient): Promise<void> {
  const dhcp = createSocket({ type: 'udp4', reuseAddr: true });
  dhcp.on('message', (data, rinfo) =>
    send({ t: 'dhcp-packet', data, address: rinfo.address, port: rinfo.port }),
  );
  dhcp.on('error', (err) => log('error', 'DHCP socket failed', { err: err.message }));
  await new Promise<void>((resolve) => dhcp.bind(config.dhcpPort, '0.0.0.0', () => resolve()));
  dhcp.setBroadcast(true);

  process.on('message', (msg: ParentMessage) => {
    if (msg.t === 'dhcp-send') dhcp.send(msg.data, msg.port, msg.address);
  });

  const metadataPort = await startMetadataServer(config, rpc, log);
  send({ t: 'ready', dhcpPort: dhcp.address().port, metadataPort });
}

function main(): void {
  if (!process.send) {
    process.stderr.write('berth endpoint: must be started by berthd (no IPC channel)\n');
    process.exit(2);
  }
  // berthd gone means nobody decides anything here any more.
  process.on('disconnect', () => process.exit(0));
  const rpc = new RpcClient(send);
  process.on('message', (msg: ParentMessage) => {
    if (msg.t === 'result') rpc.settle(msg);
    else if (msg.t === 'config') {
      run(msg.config, rpc).catch((err: Error) => {
        log('error', 'endpoint could not start', { err: err.message });
        process.exit(1);
      });
    }
  });
}

main();
