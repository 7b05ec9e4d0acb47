import { DataSourceInstanceSettings, ScopedVars, TypedVariableModel } from '@grafana/data';
import { setTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { beforeEach, describe, expect, it } from 'vitest';

import { DataSource } from './datasource';
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
  });
});
