import { MetricFindValue } from '@grafana/data';

import {
  fetchInstantQuery,
  fetchLabelNames,
  fetchLabelValues,
  fetchSeries,
  InstantResult,
  ResourceClient,
  SeriesRange,
} from './resources';
import { parseVariableQuery, VariableQuery } from './variableQuery';

/** Start and end of a time range in Unix seconds, rounded up as the Prometheus datasource does. */
export function rangeSeconds(range: { from: { valueOf(): number }; to: { valueOf(): number } }): Required<SeriesRange> {
  return { start: Math.ceil(range.from.valueOf() / 1000), end: Math.ceil(range.to.valueOf() / 1000) };
}

/** `name{a="1",b="2"}` as the Prometheus datasource writes a series in variable values. */
export function formatSeries(labels: Record<string, string>): string {
  const { __name__: name = '', ...rest } = labels;
  return `${name}{${Object.entries(rest)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`;
}

/** query_result(): one value per element, formatted as the Prometheus datasource does. */
export function formatQueryResult(data: InstantResult): MetricFindValue[] {
  switch (data.resultType) {
    case 'scalar':
    case 'string':
      return [{ text: data.result?.[1] || '', expandable: false }];
    case 'vector':
      return (data.result ?? []).map((sample) => ({
        text: `${formatSeries(sample.metric ?? {})} ${sample.value[1]} ${sample.value[0] * 1000}`,
        expandable: true,
      }));
    default:
      throw new Error(`Unknown/Unhandled result type: [${(data as { resultType?: string }).resultType}]`);
  }
}

/**
 * Runs a parsed variable query against the resources. `range` is in Unix seconds.
 */
export async function runVariableQuery(
  client: ResourceClient,
  query: VariableQuery,
  range: Required<SeriesRange>
): Promise<MetricFindValue[]> {
  switch (query.kind) {
    case 'empty':
      return [];
    case 'invalid':
      throw new Error(query.error);
    case 'label_names': {
      const names = await fetchLabelNames(client, range, query.match);
      return names.map((n) => ({ text: n, value: n }));
    }
    case 'label_values': {
      const values = await fetchLabelValues(client, query.label, range, query.match);
      return values.map((v) => ({ text: v }));
    }
    case 'metrics': {
      const names = await fetchLabelValues(client, '__name__', range);
      const re = new RegExp(query.regex);
      return names.filter((n) => re.test(n)).map((n) => ({ text: n, expandable: true }));
    }
    case 'query_result': {
      const data = await fetchInstantQuery(client, query.query, range.end);
      return formatQueryResult(data);
    }
    case 'series': {
      const series = await fetchSeries(client, query.match, range);
      return series.map((labels) => ({ text: formatSeries(labels), expandable: true }));
    }
  }
}

/** Parses and runs an (already interpolated) variable query. */
export function metricFind(client: ResourceClient, text: string, range: Required<SeriesRange>): Promise<MetricFindValue[]> {
  return runVariableQuery(client, parseVariableQuery(text), range);
}
