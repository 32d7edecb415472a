// Runs probe.py (raw sockets and crafted frames) inside a guest's namespace.
import { fileURLToPath } from 'node:url';
import { inNetns, PYTHON } from '../helpers/hostnet_lab.js';

const PROBE = fileURLToPath(new URL('./probe.py', import.meta.url));

/** probe.py's JSON answer; rejects with its output when it fails. */
export async function probe<T>(netns: string, args: string[]): Promise<T> {
  const r = await inNetns(netns, [PYTHON, PROBE, ...args]);
  if (r.code !== 0) throw new Error(`probe.py ${args[0]} in ${netns}: ${r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as T;
}

export interface Scan {
  open: number[];
  tried: number;
  unanswered: number;
}
