import { CoreApp, DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

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

/** Escapes the characters that are special in a PromQL (RE2) regex. */
export function escapeRegex(value: string): string {
  return value.replace(/[\\^$*+?.()|{}[\]]/g, '\\$&');
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

export class DataSource extends DataSourceWithBackend<Query, Options> {
  constructor(instanceSettings: DataSourceInstanceSettings<Options>) {
    super(instanceSettings);
  }

  getDefaultQuery(_app: CoreApp): Partial<Query> {
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
