// SO_PEERCRED through berth's one native addon (native/peercred, built by
// scripts/build-native.sh): the pid, uid and gid the kernel recorded when the
// peer connected. It is the default because it needs no capability: the ss
// route (peer-credentials.ts) reads other processes' /proc/<pid>/fd, which
// under berthd's unit (no CAP_SYS_PTRACE, no CAP_DAC_READ_SEARCH) shows only
// root's own processes, so a non-root member of group berth would go unnamed.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { type PeerCred, type PeerCredentials, SsPeerCredentials, socketFd } from './peer-credentials.js';

type PeercredFn = (fd: number) => PeerCred;

// From agent/api (sources) or dist/agent/api (the build, installed or not).
const CANDIDATES = [
  '../../native/peercred/build/Release/peercred.node',
  '../../../native/peercred/build/Release/peercred.node',
];

/** The addon's function, or why it could not be loaded. */
export function loadPeercred(): PeercredFn | Error {
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const rel of CANDIDATES) {
    try {
      return (require(new URL(rel, import.meta.url).pathname) as { peercred: PeercredFn }).peercred;
    } catch (err) {
      errors.push((err as Error).message.split('\n')[0] ?? '');
    }
  }
  return new Error(`native/peercred is not built (run scripts/build-native.sh): ${errors.at(-1)}`);
}

export class SoPeerCredentials implements PeerCredentials {
  constructor(private readonly peercred: PeercredFn) {}

  async of(socket: Socket): Promise<PeerCred> {
    return this.peercred(socketFd(socket));
  }
}

/** SO_PEERCRED when the addon is built, else ss and /proc; `via` says which, for the startup log. */
export function defaultPeerCredentials(): { peers: PeerCredentials; via: string } {
  const fn = loadPeercred();
  if (typeof fn === 'function') return { peers: new SoPeerCredentials(fn), via: 'SO_PEERCRED' };
  return { peers: new SsPeerCredentials(), via: `ss and /proc (${fn.message})` };
}
