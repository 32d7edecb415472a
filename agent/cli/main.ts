#!/usr/bin/env node
import { VERSION } from '../../base/version.js';
import { processIo } from './output.js';
import { runCli } from './program.js';

runCli(process.argv.slice(2), processIo, VERSION).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`berthctl: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
