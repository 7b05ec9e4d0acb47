import {
  fetchLabelNames,
  fetchLabelValues,
  fetchMetadata,
  MetricMetadata,
  ResourceClient,
  SeriesRange,
} from './resources';

/** How long fetched names and metadata are reused while typing. */
const TTL_MS = 60_000;

interface Entry<T> {
  at: number;
  value: Promise<T>;
}

/**
 * What the query editor completes from: metric names, label names and values,
 * and metric metadata, fetched from the resources and cached for a minute.
 * A failed fetch is not cached.
 */
export class LanguageProvider {
  private cache = new Map<string, Entry<unknown>>();

  constructor(
    private readonly client: ResourceClient,
    private readonly now: () => number = Date.now
  ) {}

  private cached<T>(key: string, load: () => Promise<T>): Promise<T> {
    const hit = this.cache.get(key) as Entry<T> | undefined;
    if (hit && this.now() - hit.at < TTL_MS) {
      return hit.value;
    }
    const value = load();
    this.cache.set(key, { at: this.now(), value });
    value.catch(() => {
      if (this.cache.get(key)?.value === value) {
        this.cache.delete(key);
      }
    });
    return value;
  }

  metricNames(range?: SeriesRange): Promise<string[]> {
    return this.cached('metrics', () => fetchLabelValues(this.client, '__name__', range));
  }

  /** Label names, of the series of `metric` when given; `__name__` left out. */
  labelNames(metric?: string, range?: SeriesRange): Promise<string[]> {
    const match = metric ? metricSelector(metric) : undefined;
    return this.cached(`labels:${match ?? ''}`, () =>
      fetchLabelNames(this.client, range, match).then((names) => names.filter((n) => n !== '__name__'))
    );
  }

  /** Values of `label`, among the series matching `match` when given. */
  labelValues(label: string, match?: string, range?: SeriesRange): Promise<string[]> {
    return this.cached(`values:${label}:${match ?? ''}`, () => fetchLabelValues(this.client, label, range, match));
  }

  metadata(): Promise<Record<string, MetricMetadata[]>> {
    return this.cached('metadata', () => fetchMetadata(this.client));
  }

  /**
   * HELP/TYPE of a metric. Histogram and summary series (`_bucket`, `_sum`,
   * `_count`) and counters exposed as `_total` fall back to their family's entry.
   */
  async metricMetadata(metric: string): Promise<MetricMetadata | undefined> {
    const all = await this.metadata();
    return lookupMetadata(all, metric);
  }
}

export function lookupMetadata(all: Record<string, MetricMetadata[]>, metric: string): MetricMetadata | undefined {
  if (all[metric]?.length) {
    return all[metric][0];
  }
  for (const suffix of ['_bucket', '_sum', '_count', '_total', '_created']) {
    if (metric.endsWith(suffix)) {
      const base = metric.slice(0, -suffix.length);
      const entry = all[base]?.[0];
      if (entry) {
        return entry;
      }
    }
  }
  return undefined;
}

/** A selector for a metric name, quoted when it is not a legacy name. */
export function metricSelector(metric: string): string {
  return /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(metric) ? metric : `{${JSON.stringify(metric)}}`;
}
