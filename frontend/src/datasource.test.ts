import { DataSourceInstanceSettings, dateTime, ScopedVars, TimeRange, TypedVariableModel } from '@grafana/data';
import { setTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { beforeEach, describe, expect, it, vi } from 'vitest';

import { DataSource, escapeRegex } from './datasource';
import { Options, Query } from './types';

interface FakeVariable {
  value: string | string[];
  multi?: boolean;
  includeAll?: boolean;
}

/**
 * Behaves like Grafana's TemplateSrv.replace for what matters here: `$name`,
 * `${name}` and `[[name]]`; scopedVars win over dashboard variables; unknown
 * variables are left as they are; a format function gets (value, variable).
 */
class FakeTemplateSrv implements TemplateSrv {
  constructor(private readonly vars: Record<string, FakeVariable>) {}

  getVariables(): TypedVariableModel[] {
    return [];
  }

  containsTemplate(target?: string): boolean {
    return !!target && /\$\w+|\$\{\w+\}|\[\[\w+\]\]/.test(target);
  }

  updateTimeRange(): void {}

  replace(target?: string, scopedVars?: ScopedVars, format?: string | Function): string {
    if (!target) {
      return target ?? '';
    }
    return target.replace(/\$(\w+)|\$\{(\w+)\}|\[\[(\w+)\]\]/g, (match, a, b, c) => {
      const name = a ?? b ?? c;
      const scoped = scopedVars?.[name];
      const variable: FakeVariable | undefined = scoped ? { value: String(scoped.value) } : this.vars[name];
      if (!variable) {
        return match;
      }
      if (typeof format === 'function') {
        return format(variable.value, variable);
      }
      return Array.isArray(variable.value) ? `{${variable.value.join(',')}}` : variable.value;
    });
  }
}

const instanceSettings = {
  id: 1,
  uid: 'arrowmon',
  type: 'arrowmon-metrics-datasource',
  name: 'arrowmon',
  access: 'proxy',
  readOnly: false,
  jsonData: { timeInterval: '15s' },
  meta: { id: 'arrowmon-metrics-datasource' },
} as unknown as DataSourceInstanceSettings<Options>;

// What Grafana puts in scopedVars for a panel query.
const requestScopedVars: ScopedVars = {
  __interval: { text: '30s', value: '30s' },
  __interval_ms: { text: '30000', value: 30000 },
  __rate_interval: { text: '1m', value: '1m' },
  __range: { text: '1h', value: '1h' },
};

describe('DataSource', () => {
  let ds: DataSource;

  beforeEach(() => {
    setTemplateSrv(
      new FakeTemplateSrv({
        job: { value: 'node' },
        instance: { value: ['db1:9104', 'db2:9104'], multi: true },
        step: { value: '2m' },
        lbl: { value: 'instance' },
      })
    );
    ds = new DataSource(instanceSettings);
  });

  it('replaces user variables and keeps the interval macros for the backend', () => {
    const query: Query = {
      refId: 'A',
      expr: 'sum by (${lbl}) (rate(node_cpu_seconds_total{job="$job"}[$__rate_interval])) / $__interval_ms * [[__range]] + $__interval',
      legendFormat: '{{$lbl}} $job',
      interval: '$step',
      range: true,
      instant: false,
      format: 'time_series',
    };
    const out = ds.applyTemplateVariables(query, requestScopedVars);
    expect(out.expr).toBe(
      'sum by (instance) (rate(node_cpu_seconds_total{job="node"}[$__rate_interval])) / $__interval_ms * [[__range]] + $__interval'
    );
    expect(out.legendFormat).toBe('{{instance}} node');
    expect(out.interval).toBe('2m');
    expect(out).toMatchObject({ refId: 'A', range: true, instant: false, format: 'time_series' });
    // The input query is not modified.
    expect(query.expr).toContain('$job');
  });

  it('formats multi-value variables as a regex alternation in expr', () => {
    const out = ds.applyTemplateVariables({ refId: 'A', expr: 'up{instance=~"$instance"}' }, {});
    expect(out.expr).toBe('up{instance=~"(db1:9104|db2:9104)"}');
  });

  it('escapes regex characters in variable values as PromQL strings need them', () => {
    // `10.0.0.1` must reach Prometheus as the regex `10\.0\.0\.1`, written in a
    // double-quoted PromQL string as `10\\.0\\.0\\.1`.
    expect(escapeRegex('10.0.0.1')).toBe('10\\\\.0\\\\.0\\\\.1');
    expect(escapeRegex('a\\b')).toBe('a\\\\\\\\b');
  });

  it('keeps $__interval as a min step', () => {
    const out = ds.applyTemplateVariables({ refId: 'A', expr: 'up', interval: '$__interval' }, requestScopedVars);
    expect(out.interval).toBe('$__interval');
    expect(out.legendFormat).toBeUndefined();
  });

  it('uses ordinary scoped variables (e.g. repeated panels)', () => {
    const out = ds.applyTemplateVariables({ refId: 'A', expr: 'up{job="$job"}' }, { job: { text: 'mysql', value: 'mysql' } });
    expect(out.expr).toBe('up{job="mysql"}');
  });

  it('drops hidden and empty queries', () => {
    expect(ds.filterQuery({ refId: 'A', expr: 'up' })).toBe(true);
    expect(ds.filterQuery({ refId: 'A', expr: 'up', hide: true })).toBe(false);
    expect(ds.filterQuery({ refId: 'A', expr: '  ' })).toBe(false);
    expect(ds.filterQuery({ refId: 'A' } as Query)).toBe(false);
  });

  it('has Prometheus-like defaults for new queries', () => {
    expect(ds.getDefaultQuery('dashboard' as never)).toEqual({
      expr: '',
      range: true,
      instant: false,
      format: 'time_series',
    });
    expect(ds.getDefaultQuery('explore' as never)).toMatchObject({ range: true, instant: true });
    expect(ds.getDefaultQuery('unified-alerting' as never)).toMatchObject({ range: false, instant: true });
  });
});

describe('DataSource.metricFindQuery', () => {
  // 2023-11-14T22:13:20Z .. +1h (the end has a fraction of a second: rounded up).
  const range: TimeRange = {
    from: dateTime(1_700_000_000_000),
    to: dateTime(1_700_003_599_400),
    raw: { from: 'now-1h', to: 'now' },
  };
  const START = '1700000000';
  const END = '1700003600';
  let ds: DataSource;
  let getResource: ReturnType<typeof vi.fn>;

  function respond(routes: Record<string, unknown>) {
    getResource = vi.fn(async (path: string) => {
      if (!(path in routes)) {
        throw { status: 404, data: { status: 'error', errorType: 'not_found', error: `unknown API path /${path}` } };
      }
      const body = routes[path];
      if (body instanceof Error) {
        throw body;
      }
      return body;
    });
    (ds as unknown as { getResource: unknown }).getResource = getResource;
  }

  beforeEach(() => {
    setTemplateSrv(
      new FakeTemplateSrv({
        job: { value: 'node' },
        instance: { value: ['db1:9104', 'db2:9104'], multi: true },
        metric: { value: 'node_load1' },
      })
    );
    ds = new DataSource(instanceSettings);
  });

  it('label_names() asks api/v1/labels over the dashboard range', async () => {
    respond({ 'api/v1/labels': { status: 'success', data: ['__name__', 'instance', 'job'] } });
    const values = await ds.metricFindQuery('label_names()', { range });
    expect(getResource).toHaveBeenCalledTimes(1);
    expect(getResource).toHaveBeenCalledWith('api/v1/labels', { start: START, end: END }, { showErrorAlert: false });
    expect(values).toEqual([
      { text: '__name__', value: '__name__' },
      { text: 'instance', value: 'instance' },
      { text: 'job', value: 'job' },
    ]);
  });

  it('label_values(label) asks api/v1/label/<label>/values without match[]', async () => {
    respond({ 'api/v1/label/job/values': { status: 'success', data: ['mysql', 'node'] } });
    const values = await ds.metricFindQuery('label_values(job)', { range });
    expect(getResource).toHaveBeenCalledWith(
      'api/v1/label/job/values',
      { start: START, end: END },
      { showErrorAlert: false }
    );
    expect(values).toEqual([{ text: 'mysql' }, { text: 'node' }]);
  });

  it('label_values(selector, label) interpolates variables and sends the selector as match[]', async () => {
    respond({ 'api/v1/label/instance/values': { status: 'success', data: ['localhost:9100'] } });
    await ds.metricFindQuery('label_values(up{job="$job", path="/a,b"}, instance)', { range });
    expect(getResource).toHaveBeenCalledWith(
      'api/v1/label/instance/values',
      { 'match[]': 'up{job="node", path="/a,b"}', start: START, end: END },
      { showErrorAlert: false }
    );
  });

  it('formats multi-value variables as a regex alternation', async () => {
    respond({ 'api/v1/label/version/values': { status: 'success', data: [] } });
    await ds.metricFindQuery('label_values(mysql_version_info{instance=~"$instance"}, version)', { range });
    expect(getResource.mock.calls[0][1]['match[]']).toBe('mysql_version_info{instance=~"(db1:9104|db2:9104)"}');
  });

  it('metrics(regex) filters metric names with an unanchored regex', async () => {
    respond({
      'api/v1/label/__name__/values': {
        status: 'success',
        data: ['mysql_up', 'node_cpu_seconds_total', 'node_load1', 'up'],
      },
    });
    const values = await ds.metricFindQuery('metrics(node_)', { range });
    expect(getResource).toHaveBeenCalledWith(
      'api/v1/label/__name__/values',
      { start: START, end: END },
      { showErrorAlert: false }
    );
    expect(values).toEqual([
      { text: 'node_cpu_seconds_total', expandable: true },
      { text: 'node_load1', expandable: true },
    ]);
  });

  it('query_result(query) runs an instant query at the end of the range and formats each sample', async () => {
    respond({
      'api/v1/query': {
        status: 'success',
        data: {
          resultType: 'vector',
          result: [
            { metric: { __name__: 'up', instance: 'localhost:9100', job: 'node' }, value: [1700003600, '1'] },
            { metric: { job: 'mysql' }, value: [1700003600.5, '0.25'] },
          ],
        },
      },
    });
    const values = await ds.metricFindQuery('query_result(max_over_time($metric[$__range]) > $__interval_ms)', {
      range,
    });
    expect(getResource).toHaveBeenCalledWith(
      'api/v1/query',
      { query: 'max_over_time(node_load1[3599s]) > 15000', time: END },
      { showErrorAlert: false }
    );
    expect(values).toEqual([
      { text: 'up{instance="localhost:9100",job="node"} 1 1700003600000', expandable: true },
      { text: '{job="mysql"} 0.25 1700003600500', expandable: true },
    ]);
  });

  it('query_result of a scalar gives its value; $__interval and $__rate_interval come from timeInterval', async () => {
    respond({ 'api/v1/query': { status: 'success', data: { resultType: 'scalar', result: [1700003600, '42'] } } });
    const values = await ds.metricFindQuery('query_result(scalar(sum(rate(x[$__rate_interval]))) + $__interval)', {
      range,
    });
    expect(getResource.mock.calls[0][1].query).toBe('scalar(sum(rate(x[1m]))) + 15s');
    expect(values).toEqual([{ text: '42', expandable: false }]);
  });

  it('query_result of a range vector is an error, as in the Prometheus datasource', async () => {
    respond({ 'api/v1/query': { status: 'success', data: { resultType: 'matrix', result: [] } } });
    await expect(ds.metricFindQuery('query_result(up[5m])', { range })).rejects.toThrow(
      'Unknown/Unhandled result type: [matrix]'
    );
  });

  it('any other query lists the matching series', async () => {
    respond({
      'api/v1/series': {
        status: 'success',
        data: [{ __name__: 'up', instance: 'db1:9104', job: 'mysql' }, { job: 'x' }],
      },
    });
    const values = await ds.metricFindQuery('up{job="mysql"}', { range });
    expect(getResource).toHaveBeenCalledWith(
      'api/v1/series',
      { 'match[]': 'up{job="mysql"}', start: START, end: END },
      { showErrorAlert: false }
    );
    expect(values).toEqual([
      { text: 'up{instance="db1:9104",job="mysql"}', expandable: true },
      { text: '{job="x"}', expandable: true },
    ]);
  });

  it('passes the backend error message on', async () => {
    respond({});
    getResource.mockRejectedValueOnce({
      status: 400,
      statusText: 'Bad Request',
      data: { status: 'error', errorType: 'bad_data', error: 'parse error: unexpected end of input' },
    });
    await expect(ds.metricFindQuery('query_result(sum(up) by)', { range })).rejects.toThrow(
      'parse error: unexpected end of input'
    );
    getResource.mockResolvedValueOnce({ status: 'error', errorType: 'execution', error: 'many-to-many matching' });
    await expect(ds.metricFindQuery('query_result(a * b)', { range })).rejects.toThrow('many-to-many matching');
  });

  it('rejects an invalid variable query without asking the backend, and ignores an empty one', async () => {
    respond({});
    await expect(ds.metricFindQuery('label_values(up, )', { range })).rejects.toThrow(/not a label name/);
    expect(await ds.metricFindQuery('', { range })).toEqual([]);
    expect(await ds.metricFindQuery('   ', { range })).toEqual([]);
    expect(getResource).not.toHaveBeenCalled();
  });
});
