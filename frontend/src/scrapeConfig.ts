/**
 * Just enough YAML reading for the config editor: `global.scrape_interval` and the
 * `${secure.NAME}` references. The backend parses the scrape config for real and
 * reports errors through the health check; this only drives hints in the editor.
 */

function stripComment(line: string): string {
  // A '#' starts a comment at line start or after whitespace (outside quotes, which
  // scrape intervals never contain).
  const m = /(^|\s)#/.exec(line);
  return m ? line.slice(0, m.index) : line;
}

function unquote(value: string): string {
  const v = value.trim();
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v[v.length - 1] === v[0]) {
    return v.slice(1, -1).trim();
  }
  return v;
}

/** Returns `global.scrape_interval` from Prometheus config YAML, or undefined. */
export function globalScrapeInterval(yaml: string | undefined): string | undefined {
  if (!yaml) {
    return undefined;
  }
  const lines = yaml.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = stripComment(lines[i]);
    const top = /^global\s*:(.*)$/.exec(line);
    if (!top) {
      continue;
    }
    const rest = top[1].trim();
    if (rest.startsWith('{')) {
      // Flow style: global: {scrape_interval: 30s, ...}
      const m = /[{,]\s*["']?scrape_interval["']?\s*:\s*([^,}]+)/.exec(rest);
      return m ? unquote(m[1]) || undefined : undefined;
    }
    let childIndent: number | undefined;
    for (let j = i + 1; j < lines.length; j++) {
      const child = stripComment(lines[j]);
      if (child.trim() === '') {
        continue;
      }
      const indent = child.length - child.trimStart().length;
      if (indent === 0) {
        break; // next top-level key
      }
      childIndent ??= indent;
      if (indent !== childIndent) {
        continue; // nested deeper (e.g. external_labels entries)
      }
      const kv = /^\s*["']?scrape_interval["']?\s*:\s*(.*)$/.exec(child);
      if (kv) {
        return unquote(kv[1]) || undefined;
      }
    }
    return undefined;
  }
  return undefined;
}

/** Names used as `${secure.NAME}` in the scrape config, in order of first use. */
export function secureReferences(yaml: string | undefined): string[] {
  const names: string[] = [];
  for (const m of (yaml ?? '').matchAll(/\$\{secure\.([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
    if (!names.includes(m[1])) {
      names.push(m[1]);
    }
  }
  return names;
}

export const SECRET_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
