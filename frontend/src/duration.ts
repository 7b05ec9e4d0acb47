const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
  y: 31_536_000_000,
};

/**
 * Parses a Prometheus duration (`15s`, `1m30s`, `500ms`, `1d`) to milliseconds.
 * Returns undefined for anything else, including template variables.
 */
export function parseDurationMs(text: string): number | undefined {
  const s = text.trim();
  if (s === '' || !/^(\d+(ms|[smhdwy]))+$/.test(s)) {
    return undefined;
  }
  let total = 0;
  for (const m of s.matchAll(/(\d+)(ms|[smhdwy])/g)) {
    total += Number(m[1]) * UNIT_MS[m[2]];
  }
  return total;
}
