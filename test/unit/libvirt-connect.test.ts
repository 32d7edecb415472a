// Connecting to libvirt while it comes up. Found in CI: berthd started while a
// stale /run/libvirt/libvirt-sock was left behind, so its start-up connect
// went to a bus that never answered; the first create joined that attempt and
// failed 10 s later, although libvirt had been up for most of that time.
import { EventEmitter } from 'node:events';
import pino from 'pino';
import t from 'tap';
import type { Hypervisor } from '../../agent/compute/hypervisor.js';
import { LibvirtDbus } from '../../agent/compute/libvirt-dbus.js';
import { LibvirtRuntime } from '../../agent/services/libvirt-runtime.js';
import { Names } from '../../hostnet/names.js';
import type { ImageStore } from '../../images/store.js';

/** A D-Bus connection whose calls never answer: what a bus to a dead daemon looks like. */
class SilentBus extends EventEmitter {
  calls = 0;
  disconnected = false;
  call(): Promise<never> {
    this.calls++;
    return new Promise(() => {});
  }
  disconnect(): void {
    this.disconnected = true;
  }
}

t.test('a bus whose connection fails fails its calls at once, not at their deadline', async (t) => {
  const bus = new SilentBus();
  const hv = new LibvirtDbus({
    connectBus: () => bus as never,
    callTimeoutMs: 60_000,
    heartbeatMs: 3_600_000,
  });
  t.teardown(() => hv.close());
  const started = Date.now();
  const listing = hv.list();
  setTimeout(() => bus.emit('error', new Error('connect ECONNREFUSED /run/dbus/system_bus_socket')), 20);
  await t.rejects(listing, /D-Bus connection failed: .*ECONNREFUSED/);
  t.ok(Date.now() - started < 5_000, `rejected after ${Date.now() - started} ms, not the 60 s deadline`);
  t.ok(bus.disconnected, 'the broken bus is dropped');
});

/** A hypervisor whose list() answers after `ms`, or fails then. */
function fakeHypervisor(ms: number, fail: boolean): Hypervisor & { closed: boolean } {
  const hv = {
    closed: false,
    list: () =>
      new Promise<never[]>((resolve, reject) =>
        setTimeout(() => (fail ? reject(new Error('no answer within 10000 ms')) : resolve([])), ms),
      ),
    macs: async () => new Set<string>(),
    onEvent: () => () => {},
    close: async () => {
      hv.closed = true;
    },
  };
  return hv as unknown as Hypervisor & { closed: boolean };
}

function runtime(makeHypervisor: () => Hypervisor): LibvirtRuntime {
  return new LibvirtRuntime({
    stateDir: '/nonexistent',
    names: new Names('lc'),
    hostId: () => 'h-test',
    images: {} as ImageStore,
    log: pino({ level: 'silent' }),
    makeHypervisor,
    sockets: [],
    serialLogCap: async () => ({ bounded: true, maxFileBytes: 1, backups: 1, totalBytes: 2 }),
  });
}

t.test('a caller that joined a failing attempt gets an attempt of its own', async (t) => {
  const made: Array<Hypervisor & { closed: boolean }> = [];
  const rt = runtime(() => {
    const hv = fakeHypervisor(made.length === 0 ? 200 : 5, made.length === 0);
    made.push(hv);
    return hv;
  });
  // berthd's start-up attempt, begun while libvirt was still down...
  const early = rt.hypervisor();
  // ...and a create that arrives while it is still waiting.
  const create = rt.hypervisor();
  await t.rejects(early, /libvirt does not answer over D-Bus/, 'the early attempt still fails');
  const hv = await create;
  t.equal(hv, made[1], 'the create is served by a fresh connection');
  t.ok(made[0]?.closed, 'the failed connection was closed');
  t.equal(await rt.hypervisor(), hv, 'later callers reuse it');
  t.equal(made.length, 2, 'no third connection');
});

t.test('a caller that began the attempt itself is not retried', async (t) => {
  let made = 0;
  const rt = runtime(() => {
    made++;
    return fakeHypervisor(5, true);
  });
  await t.rejects(rt.hypervisor(), /libvirt does not answer over D-Bus/);
  t.equal(made, 1, 'one attempt: a libvirt that is down fails the call promptly');
});
