// Reads the config file (or the embedded default when the default path is absent).
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { BerthError, causeText } from '../../base/errors.js';
import { type Config, DEFAULT_CONFIG_PATH, EMBEDDED_DEFAULT } from './schema.js';
import { validateConfig } from './validate.js';

export interface LoadedConfig {
  config: Config;
  /** The file it came from, or "embedded default". */
  source: string;
}

/**
 * An explicit path must exist; the default path may be absent, and then the
 * embedded default applies.
 */
export async function loadConfig(path: string | undefined): Promise<LoadedConfig> {
  const file = path ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (path === undefined && (err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { config: structuredClone(EMBEDDED_DEFAULT), source: 'embedded default' };
    }
    throw new BerthError('BERTH_ERR_CONFIG', `config: could not read "${file}": ${causeText(err)}`, {
      cause: err,
    });
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new BerthError('BERTH_ERR_CONFIG', `config: "${file}" is not valid YAML: ${causeText(err)}`, {
      cause: err,
    });
  }
  return { config: validateConfig(raw), source: file };
}
