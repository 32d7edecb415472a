// The LevelDB store: one database under <state-dir>/db, locked by LevelDB's
// own LOCK file so a second berthd on the same state dir fails at once.
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Level } from 'level';
import { BerthError, causeText } from '../../base/errors.js';
import {
  type BatchOp,
  type BatchOptions,
  type Entry,
  type ListOptions,
  META_KEYS,
  prefixEnd,
  SCHEMA_VERSION,
  type Store,
} from '../../base/store.js';
import { GroupCommit } from './group-commit.js';
import { checkLevelFiles } from './leveldb-check.js';
import { isDiskFull, resumeAfterFailure } from './write-failure.js';

// LevelDB's lock is per process: a second open of the same path inside one
// process would succeed and then share nothing. Refuse it instead.
const openPaths = new Set<string>();

export const PID_FILE = 'berthd.pid';

interface LevelError extends Error {
  code?: string;
  cause?: LevelError;
}

async function lockHolder(stateDir: string): Promise<string> {
  try {
    const pid = (await readFile(join(stateDir, PID_FILE), 'utf8')).trim();
    return /^\d+$/.test(pid) ? ` (pid ${pid})` : '';
  } catch {
    return '';
  }
}

async function translateOpenError(err: LevelError, stateDir: string, dbPath: string): Promise<BerthError> {
  const code = err.cause?.code ?? err.code;
  const detail = err.cause?.message ?? err.message;
  if (code === 'LEVEL_LOCKED') {
    return new BerthError(
      'BERTH_ERR_STORE_LOCKED',
      `could not open store "${stateDir}": it is in use by another berthd${await lockHolder(stateDir)}; stop it or pass another --state-dir`,
      { cause: err },
    );
  }
  if (code === 'LEVEL_CORRUPTION') {
    return new BerthError(
      'BERTH_ERR_STORE_CORRUPT',
      `could not open store "${dbPath}": it is corrupt (${detail}); berth never resets it: restore a backup or move it aside`,
      { cause: err },
    );
  }
  return new BerthError('BERTH_ERR_STORE_IO', `could not open store "${dbPath}": ${detail}`, { cause: err });
}

export class LevelStore implements Store {
  private readonly writes: GroupCommit;

  private constructor(
    private readonly db: Level<string, unknown>,
    readonly path: string,
  ) {
    this.writes = new GroupCommit(
      resumeAfterFailure(
        {
          // A synchronous read sees every write that landed, and none is in flight
          // while guards are checked (group-commit.ts).
          read: (key) => {
            try {
              return this.db.getSync(key);
            } catch (err) {
              throw this.ioError('read', key, err);
            }
          },
          // A chained batch, not db.batch(array): abstract-level copies every op of
          // an array with a double object spread, which V8 runs slowly (about 5 µs
          // per op here, against about 1 µs for a chained put).
          write: async (ops, sync) => {
            const batch = this.db.batch();
            try {
              for (const op of ops) {
                if (op.type === 'put') batch.put(op.key, op.value);
                else batch.del(op.key);
              }
            } catch (err) {
              await batch.close();
              throw err;
            }
            await batch.write({ sync } as never);
          },
          writeError: (ops, err) => this.ioError('write', ops[0]?.key ?? '', err),
        },
        { dbPath: path, rotate: () => this.rotateLog() },
      ),
    );
  }

  /** A fresh log after a failed write (write-failure.ts): compaction flushes the memtable to a table. */
  private async rotateLog(): Promise<void> {
    try {
      // In Node, level's Level is classic-level's, which has compactRange; its types do not say so.
      const db = this.db as unknown as { compactRange(start: string, end: string): Promise<void> };
      await db.compactRange(META_KEYS.schema, META_KEYS.schema);
    } catch {
      // LevelDB keeps a failed flush as an error for every later write until it is reopened.
      await this.db.close();
      await this.db.open();
    }
  }

  /** Opens (creating when new) the store in stateDir and checks its schema version. */
  static async open(stateDir: string): Promise<LevelStore> {
    const dbPath = join(stateDir, 'db');
    if (openPaths.has(dbPath)) {
      throw new BerthError(
        'BERTH_ERR_STORE_LOCKED',
        `could not open store "${stateDir}": it is already open in this process`,
      );
    }
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const existing = await readdir(dbPath).catch(() => [] as string[]);
    // Without CURRENT, LevelDB would quietly start an empty database next to
    // the old files: that is a reset, and berth never resets state silently.
    if (existing.length > 0 && !existing.includes('CURRENT')) {
      throw new BerthError(
        'BERTH_ERR_STORE_CORRUPT',
        `could not open store "${dbPath}": it has files but no CURRENT; berth never resets it: restore a backup or move it aside`,
      );
    }
    const damage = existing.length > 0 ? await checkLevelFiles(dbPath) : undefined;
    if (damage) {
      throw new BerthError(
        'BERTH_ERR_STORE_CORRUPT',
        `could not open store "${dbPath}": it is corrupt (${damage}); berth never resets it: restore a backup or move it aside`,
      );
    }
    const db = new Level<string, unknown>(dbPath, { valueEncoding: 'json', createIfMissing: true });
    try {
      await db.open();
    } catch (err) {
      throw await translateOpenError(err as LevelError, stateDir, dbPath);
    }
    openPaths.add(dbPath);
    const store = new LevelStore(db, dbPath);
    try {
      await store.checkSchema(existing.length === 0);
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  private async checkSchema(fresh: boolean): Promise<void> {
    const version = await this.get<number>(META_KEYS.schema);
    if (version === undefined) {
      const any = await this.list('', { limit: 1 });
      if (!fresh || any.length > 0) {
        throw new BerthError(
          'BERTH_ERR_STORE_CORRUPT',
          `could not open store "${this.path}": it holds data but no schema version; berth never resets it: restore a backup or move it aside`,
        );
      }
      await this.batch([
        { type: 'put', key: META_KEYS.schema, value: SCHEMA_VERSION },
        { type: 'put', key: META_KEYS.createdAt, value: new Date().toISOString() },
      ]);
      return;
    }
    if (typeof version !== 'number' || !Number.isInteger(version)) {
      throw new BerthError(
        'BERTH_ERR_STORE_CORRUPT',
        `could not open store "${this.path}": schema version ${JSON.stringify(version)} is not a number`,
      );
    }
    if (version > SCHEMA_VERSION) {
      throw new BerthError(
        'BERTH_ERR_STORE_VERSION',
        `could not open store "${this.path}": it has schema version ${version}, this berthd understands up to ${SCHEMA_VERSION}; upgrade berth`,
      );
    }
  }

  async get<T>(key: string): Promise<T | undefined> {
    try {
      return (await this.db.get(key)) as T | undefined;
    } catch (err) {
      throw this.ioError('read', key, err);
    }
  }

  async list<T>(prefix: string, options: ListOptions = {}): Promise<Entry<T>[]> {
    const range: Record<string, unknown> = { lt: prefixEnd(prefix), reverse: options.reverse ?? false };
    if (options.after !== undefined && options.after >= prefix) range.gt = options.after;
    else range.gte = prefix;
    if (options.limit !== undefined) range.limit = options.limit;
    try {
      const rows = await this.db.iterator(range).all();
      return rows.map(([key, value]) => ({ key, value: value as T }));
    } catch (err) {
      throw this.ioError('list', prefix, err);
    }
  }

  /**
   * Batches land in order, each atomically; batches that queue behind a write
   * share the next one (one fsync), and a guard checked still holds when its
   * batch lands (group-commit.ts).
   */
  batch(ops: BatchOp[], options: BatchOptions = {}): Promise<void> {
    return this.writes.submit(ops, options);
  }

  async close(): Promise<void> {
    await this.writes.idle();
    openPaths.delete(this.path);
    await this.db.close();
  }

  private ioError(verb: string, key: string, err: unknown): BerthError {
    if (err instanceof BerthError) return err;
    const code = (err as LevelError).cause?.code ?? (err as LevelError).code;
    if (isDiskFull(causeText(err))) {
      return new BerthError(
        'BERTH_ERR_STORE_FULL',
        `could not ${verb} key "${key}" in store "${this.path}": the disk is full (${causeText(err)}); free space under ${dirname(this.path)}; reads still work`,
        { cause: err },
      );
    }
    if (code === 'LEVEL_CORRUPTION') {
      return new BerthError(
        'BERTH_ERR_STORE_CORRUPT',
        `could not ${verb} key "${key}": store "${this.path}" is corrupt: ${causeText(err)}; berth never resets it: restore a backup or move it aside`,
        { cause: err },
      );
    }
    return new BerthError(
      'BERTH_ERR_STORE_IO',
      `could not ${verb} key "${key}" in store "${this.path}": ${causeText(err)}`,
      { cause: err },
    );
  }
}
