// Registers instances the quick way, for benchmarks that need many of them:
// berth's own services (InstanceService over the real LevelDB store, the real
// MAC pool and IPAM) write exactly the records `instance create` writes, with
// a driver that does no host work. The real berthd started on that state dir
// then realises every guest in its reconcile at start, as after a reboot.
//
// Why not the admin API: each create through it lists the whole nft guard
// table (hostnet/guard/guard.ts addPort → observe), so N creates cost O(N²);
// 1000 of them take over ten minutes here (issue #8's RSS figure needs 1000).
import pino from 'pino';
import { loadConfig } from '../../agent/config/load.js';
import { buildServices } from '../../agent/daemon/services.js';
import { LevelStore } from '../../agent/store/level-store.js';
import { FakeDriver } from '../../test/fakes/fake-driver.js';
import { FakeObserver } from '../../test/fakes/fake-observer.js';
import { type BenchBerthdOptions, writeBenchConfig } from './berthd.js';

/** Writes count netns instances `${stem}${i}` into o's state dir; berthd must not be running. */
export async function registerOffline(
  o: BenchBerthdOptions,
  network: string,
  count: number,
  stem = 'g',
): Promise<void> {
  const { config, stateDir } = writeBenchConfig(o);
  const loaded = await loadConfig(config);
  const store = await LevelStore.open(stateDir);
  try {
    const services = await buildServices(
      store,
      { ...loaded.config, state_dir: stateDir },
      pino({ level: 'warn' }),
      () => new FakeDriver(),
      () => new FakeObserver(),
    );
    for (let i = 0; i < count; i++)
      await services.instances.create({ name: `${stem}${i}`, network, runtime: 'netns' });
  } finally {
    await store.close();
  }
}
