import {
  CoreApp,
  DataSourceInstanceSettings,
  getDefaultTimeRange,
  LegacyMetricFindQueryOptions,
  MetricFindValue,
  rangeUtil,
  ScopedVars,
  TimeRange,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { LanguageProvider } from './languageProvider';
import { metricFind, rangeSeconds } from './metricFind';
import { DEFAULT_QUERY, Options, Query } from './types';

/**
 * Interval macros the backend expands itself (it knows the step, the scrape
 * interval and the range). Grafana puts some of them in scopedVars; they are
 * removed before interpolation so the backend always sees the macro.
 */
const BACKEND_MACROS = [
  '__interval',
  '__interval_ms',
  '__rate_interval',
  '__rate_interval_ms',
  '__range',
  '__range_s',
  '__range_ms',
];

function withoutBackendMacros(scopedVars: ScopedVars | undefined): ScopedVars {
  const vars: ScopedVars = { ...scopedVars };
  for (const name of BACKEND_MACROS) {
    delete vars[name];
  }
  return vars;
}

/**
 * Escapes a variable value for use inside a double-quoted PromQL regex, as Grafana's
 * Prometheus datasource does: the regex needs `\.`, and the PromQL string literal
 * needs that backslash doubled, so the query text carries `\\.`.
 */
export function escapeRegex(value: string): string {
  return value.replace(/\\/g, '\\\\\\\\').replace(/[$^*{}[\]'+?.()|]/g, '\\\\$&');
}

interface VariableLike {
  multi?: boolean;
  includeAll?: boolean;
}

/**
 * Formats a variable value inside a PromQL expression, as Grafana's Prometheus
 * datasource does: a single-value variable goes in as is; a multi-value or
 * "All" variable becomes a regex alternation for use with `=~`.
 */
export function formatPromqlValue(value: string | string[], variable: VariableLike): string {
  if (!variable?.multi && !variable?.includeAll) {
    return Array.isArray(value) ? value.join('|') : value;
  }
  const values = (Array.isArray(value) ? value : [value]).map(escapeRegex);
  return values.length === 1 ? values[0] : `(${values.join('|')})`;
}

/** Scrape interval used for `$__interval` in variable queries (the Prometheus datasource's default). */
const DEFAULT_INTERVAL = '15s';

export class DataSource extends DataSourceWithBackend<Query, Options> {
  /** `jsonData.timeInterval`, or 15s. */
  readonly interval: string;
  /** Metric names, labels and metadata for the query editor (cached). */
  readonly languageProvider: LanguageProvider;

  constructor(instanceSettings: DataSourceInstanceSettings<Options>) {
    super(instanceSettings);
    this.interval = instanceSettings.jsonData?.timeInterval?.trim() || DEFAULT_INTERVAL;
    this.languageProvider = new LanguageProvider(this);
  }

  /**
   * Variable queries (label_names(), label_values(), metrics(), query_result(), or
   * a series selector), over the dashboard time range. Template variables and
   * `$__interval`, `$__rate_interval` and `$__range` are interpolated first, as
   * the Prometheus datasource does (it has no `$__rate_interval` here; arrowmon
   * gives it 4 × the scrape interval, what Grafana computes when the step is the
   * scrape interval).
   */
  async metricFindQuery(query: string, options?: LegacyMetricFindQueryOptions): Promise<MetricFindValue[]> {
    if (!query) {
      return [];
    }
    const range = options?.range ?? getDefaultTimeRange();
    const scopedVars: ScopedVars = {
      ...options?.scopedVars,
      ...this.getIntervalVars(),
      ...rangeScopedVars(range),
    };
    const interpolated = getTemplateSrv().replace(query, scopedVars, formatPromqlValue);
    return metricFind(this, interpolated, rangeSeconds(range));
  }

  private getIntervalVars(): ScopedVars {
    let ms: number;
    try {
      ms = rangeUtil.intervalToMs(this.interval);
    } catch {
      ms = rangeUtil.intervalToMs(DEFAULT_INTERVAL);
    }
    const rateMs = 4 * ms;
    const rate = rangeUtil.secondsToHms(rateMs / 1000);
    return {
      __interval: { text: this.interval, value: this.interval },
      __interval_ms: { text: String(ms), value: ms },
      __rate_interval: { text: rate, value: rate },
      __rate_interval_ms: { text: String(rateMs), value: rateMs },
    };
  }

  /** As the Prometheus datasource: Explore runs range and instant, alerting instant only. */
  getDefaultQuery(app: CoreApp): Partial<Query> {
    if (app === CoreApp.UnifiedAlerting) {
      return { ...DEFAULT_QUERY, instant: true, range: false };
    }
    if (app === CoreApp.Explore) {
      return { ...DEFAULT_QUERY, instant: true, range: true };
    }
    return DEFAULT_QUERY;
  }

  /** Hidden queries and queries without an expression are not sent. */
  filterQuery(query: Query): boolean {
    return !query.hide && !!query.expr?.trim();
  }

  applyTemplateVariables(query: Query, scopedVars: ScopedVars): Query {
    const templateSrv = getTemplateSrv();
    const vars = withoutBackendMacros(scopedVars);
    const interpolated: Query = {
      ...query,
      expr: templateSrv.replace(query.expr ?? '', vars, formatPromqlValue),
    };
    if (query.legendFormat !== undefined) {
      interpolated.legendFormat = templateSrv.replace(query.legendFormat, vars);
    }
    if (query.interval !== undefined) {
      interpolated.interval = templateSrv.replace(query.interval, vars);
    }
    return interpolated;
  }
}

/** `$__range`, `$__range_s`, `$__range_ms` as the Prometheus datasource sets them for variable queries. */
export function rangeScopedVars(range: TimeRange): ScopedVars {
  const ms = range.to.valueOf() - range.from.valueOf();
  const s = Math.round(ms / 1000);
  return {
    __range_ms: { text: String(ms), value: ms },
    __range_s: { text: String(s), value: s },
    __range: { text: `${s}s`, value: `${s}s` },
  };
}
