import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** Result format; same values as Grafana's Prometheus datasource. */
export type QueryFormat = 'time_series' | 'table' | 'heatmap';

/**
 * The query model. Same JSON as Grafana's Prometheus datasource, so dashboards
 * can move between the two by changing only the datasource reference.
 */
export interface Query extends DataQuery {
  /** PromQL expression. */
  expr: string;
  /** Legend template, e.g. `{{instance}}`; `__auto` lets the backend choose. */
  legendFormat?: string;
  /** Minimum step, e.g. `30s` or `$__interval`. */
  interval?: string;
  /** Evaluate once at the end of the time range. */
  instant?: boolean;
  /** Evaluate over the whole time range. */
  range?: boolean;
  format?: QueryFormat;
  exemplar?: boolean;
  /** Resolution divisor (legacy Prometheus field, kept for compatibility). */
  intervalFactor?: number;
}

export const DEFAULT_QUERY: Partial<Query> = {
  expr: '',
  range: true,
  instant: false,
  format: 'time_series',
};

/** Datasource settings stored in jsonData (visible to anyone who can read the datasource). */
export interface Options extends DataSourceJsonData {
  /** Prometheus `scrape_configs` YAML (optionally with a `global:` section). */
  scrapeConfig?: string;
  /** Recording and alerting rules: a Prometheus rule file's YAML (`groups:`). */
  ruleConfig?: string;
  /** Scrape interval, e.g. `15s`; also the lower bound of `$__interval`. */
  timeInterval?: string;
  /** Maximum time a query may run, e.g. `60s`. */
  queryTimeout?: string;
  /** How long samples are kept, e.g. `15d` (Prometheus `--storage.tsdb.retention.time`). */
  retentionTime?: string;
  /** Most bytes kept on disk, e.g. `10GB` (Prometheus `--storage.tsdb.retention.size`). */
  retentionSize?: string;
  /** Most queries evaluated at once; more wait in a queue (Prometheus `--query.max-concurrency`, default 20). */
  maxConcurrentQueries?: number | string;
  /** Memory the queries in flight may hold together, e.g. `2GB`; one query may hold half. `0`: no limit. */
  maxQueryMemory?: string;
  /** Written by the first frontend; read as `retentionTime` when that is unset. */
  retention?: string;
}

/**
 * Secrets stored encrypted by Grafana (secureJsonData). Names are free; the scrape
 * config refers to them as `${secure.NAME}` (e.g. `basicAuthPassword`, `bearerToken`).
 */
export type SecureOptions = Record<string, string>;
