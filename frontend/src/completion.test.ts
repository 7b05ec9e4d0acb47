import { describe, expect, it } from 'vitest';

import {
  applySuggestion,
  CompletionContext,
  completionContext,
  filterSuggestions,
  metricAt,
  metricsInExpression,
  Suggestion,
} from './completion';

/** Context at the `|` in `marked`. */
function at(marked: string, explicit = false): CompletionContext | null {
  const pos = marked.indexOf('|');
  return completionContext(marked.replace('|', ''), pos, explicit);
}

describe('completionContext', () => {
  it('offers label values inside a quoted matcher value, scoped to the metric', () => {
    expect(at('up{job="|')).toEqual({
      kind: 'label-value',
      label: 'job',
      prefix: '',
      from: 8,
      to: 8,
      match: 'up',
      quote: '"',
      closed: false,
    });
    expect(at('rate(node_cpu_seconds_total{mode=~"id|"}[5m])')).toMatchObject({
      kind: 'label-value',
      label: 'mode',
      prefix: 'id',
      match: 'node_cpu_seconds_total',
      closed: true,
    });
  });

  it('scopes label values by the complete matchers before the current one', () => {
    expect(at('up{job="node", instance!="a\\"b", mode="|"}')).toMatchObject({
      kind: 'label-value',
      label: 'mode',
      match: 'up{job="node",instance!="a\\"b"}',
    });
    expect(at('{job="node",instance=\'|')).toMatchObject({
      kind: 'label-value',
      label: 'instance',
      match: '{job="node"}',
      quote: "'",
    });
    expect(at('{instance="|')).toMatchObject({ kind: 'label-value', label: 'instance', match: undefined });
  });

  it('offers a quoted value right after the operator', () => {
    expect(at('up{job=|}')).toMatchObject({ kind: 'label-value', label: 'job', quote: null, from: 7, to: 7 });
    expect(at('up{job != |}')).toMatchObject({ kind: 'label-value', label: 'job', quote: null });
  });

  it('offers label names after { and , in a selector', () => {
    expect(at('up{|}')).toEqual({ kind: 'label-name', prefix: '', from: 3, to: 3, metric: 'up' });
    expect(at('up{job="a", ins|}')).toMatchObject({ kind: 'label-name', prefix: 'ins', metric: 'up' });
    expect(at('{|')).toMatchObject({ kind: 'label-name', metric: undefined });
  });

  it('offers label names in by/without/on/ignoring lists', () => {
    expect(at('sum by (|) (up)')).toMatchObject({ kind: 'label-name', prefix: '' });
    expect(at('sum(rate(x[5m])) without (job, inst|)')).toMatchObject({ kind: 'label-name', prefix: 'inst' });
    expect(at('a / on(|) b')).toMatchObject({ kind: 'label-name' });
    expect(at('a * group_left(ver|) b')).toMatchObject({ kind: 'label-name', prefix: 'ver' });
  });

  it('offers metrics and functions for a word outside selectors', () => {
    expect(at('node_|')).toEqual({ kind: 'metric', prefix: 'node_', from: 0, to: 5 });
    expect(at('sum(rate(node_cpu|_total[5m]))')).toEqual({ kind: 'metric', prefix: 'node_cpu', from: 9, to: 23 });
    expect(at('rate(|')).toBeNull();
    expect(at('rate(|', true)).toMatchObject({ kind: 'metric', prefix: '' });
  });

  it('offers durations in ranges', () => {
    expect(at('rate(up[|])')).toMatchObject({ kind: 'duration', prefix: '' });
    expect(at('rate(up[$__ra|])')).toMatchObject({ kind: 'duration', prefix: '$__ra', from: 8 });
    expect(at('max_over_time(up[1h:|])')).toMatchObject({ kind: 'duration' });
  });

  it('offers nothing in numbers, variables, comments, plain strings and after a value', () => {
    expect(at('up > 1|')).toBeNull();
    expect(at('up{job="$jo|"}')).toMatchObject({ kind: 'label-value' }); // still a label value
    expect(at('up{job=~"$job"} * $fac|')).toBeNull();
    expect(at('# node_|\nup')).toBeNull();
    expect(at('label_replace(up, "ds|"')).toBeNull();
    expect(at('up{job="a"|}')).toBeNull();
    expect(at('up{job=|"a"}')).toBeNull();
  });
});

describe('applySuggestion', () => {
  const value = (label: string): Suggestion => ({ label, kind: 'value' });

  it('inserts a label value and closes the string', () => {
    const text = 'up{job="';
    expect(applySuggestion(text, at('up{job="|')!, value('node'))).toEqual({ text: 'up{job="node"', cursor: 13 });
  });

  it('replaces the typed part of a closed string and moves past the quote', () => {
    const ctx = at('up{job="no|de_old"}')!;
    expect(applySuggestion('up{job="node_old"}', ctx, value('node'))).toEqual({ text: 'up{job="node"}', cursor: 13 });
  });

  it('quotes and escapes values', () => {
    expect(applySuggestion('up{path=}', at('up{path=|}')!, value('a"b\\c'))).toEqual({
      text: 'up{path="a\\"b\\\\c"}',
      cursor: 17,
    });
    expect(applySuggestion("up{path='", at("up{path='|")!, value("it's"))).toEqual({
      text: "up{path='it\\'s'",
      cursor: 15,
    });
  });

  it('inserts a function with its parenthesis, and a metric over the whole word', () => {
    expect(applySuggestion('ra', at('ra|')!, { label: 'rate', kind: 'function' })).toEqual({ text: 'rate(', cursor: 5 });
    expect(applySuggestion('ra(up[5m])', at('ra|(up[5m])')!, { label: 'rate', kind: 'function' })).toEqual({
      text: 'rate(up[5m])',
      cursor: 5,
    });
    expect(applySuggestion('sum(node_cpu)', at('sum(node_|cpu)')!, { label: 'node_load1', kind: 'metric' })).toEqual({
      text: 'sum(node_load1)',
      cursor: 14,
    });
  });
});

describe('filterSuggestions', () => {
  const items: Suggestion[] = ['node_load1', 'mysql_up', 'up', 'node_up'].map((label) => ({ label, kind: 'metric' }));

  it('puts prefix matches first, then substring matches, case-insensitively', () => {
    expect(filterSuggestions(items, 'UP').map((s) => s.label)).toEqual(['up', 'mysql_up', 'node_up']);
    expect(filterSuggestions(items, 'node').map((s) => s.label)).toEqual(['node_load1', 'node_up']);
    expect(filterSuggestions(items, '').length).toBe(4);
  });

  it('leaves out an item identical to what is typed', () => {
    expect(filterSuggestions(items, 'node_load1')).toEqual([]);
  });
});

describe('metricsInExpression', () => {
  it('finds metric names, skipping functions, keywords, labels, strings, numbers and durations', () => {
    const expr =
      'sum by (job, instance) (rate(node_cpu_seconds_total{mode!="idle", job=~"a|b"}[5m] offset 1h)) / on (instance) group_left(nodename) node_uname_info * 1e3 + $var';
    expect(metricsInExpression(expr).map((m) => m.name)).toEqual(['node_cpu_seconds_total', 'node_uname_info']);
  });

  it('picks the metric at the cursor, else the first one', () => {
    const expr = 'mysql_up + node_load1';
    expect(metricAt(expr, 15)).toBe('node_load1');
    expect(metricAt(expr, 9)).toBe('mysql_up');
    expect(metricAt('sum(rate(x[5m]))', 0)).toBe('x');
    expect(metricAt('time()', 0)).toBeUndefined();
  });
});
