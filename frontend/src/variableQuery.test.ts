import { describe, expect, it } from 'vitest';

import { parseVariableQuery } from './variableQuery';

describe('parseVariableQuery: label_names', () => {
  it('parses label_names() with and without whitespace', () => {
    expect(parseVariableQuery('label_names()')).toEqual({ kind: 'label_names' });
    expect(parseVariableQuery('  label_names ( )  ')).toEqual({ kind: 'label_names' });
    expect(parseVariableQuery('\nlabel_names()\n')).toEqual({ kind: 'label_names' });
  });

  it('reads a bare argument as a metric name regex, as the Prometheus datasource does', () => {
    expect(parseVariableQuery('label_names(node_cpu)')).toEqual({
      kind: 'label_names',
      match: '{__name__=~".*node_cpu.*"}',
    });
  });

  it('uses a selector argument as is', () => {
    expect(parseVariableQuery('label_names(up{job="node"})')).toEqual({ kind: 'label_names', match: 'up{job="node"}' });
  });
});

describe('parseVariableQuery: label_values', () => {
  it('parses label_values(label)', () => {
    expect(parseVariableQuery('label_values(job)')).toEqual({ kind: 'label_values', label: 'job' });
    expect(parseVariableQuery('label_values( job )')).toEqual({ kind: 'label_values', label: 'job' });
    expect(parseVariableQuery('label_values(__name__)')).toEqual({ kind: 'label_values', label: '__name__' });
  });

  it('parses label_values(metric, label)', () => {
    expect(parseVariableQuery('label_values(up, instance)')).toEqual({
      kind: 'label_values',
      label: 'instance',
      match: 'up',
    });
    expect(parseVariableQuery('label_values(up,instance)')).toEqual({
      kind: 'label_values',
      label: 'instance',
      match: 'up',
    });
  });

  it('parses selectors with matchers, commas, braces and parentheses inside quotes', () => {
    expect(parseVariableQuery('label_values(node_uname_info{job="node", instance=~"db1|db2"}, nodename)')).toEqual({
      kind: 'label_values',
      label: 'nodename',
      match: 'node_uname_info{job="node", instance=~"db1|db2"}',
    });
    expect(parseVariableQuery('label_values(up{path="/a,b)c{d}", x=\'y,z\'}, job)')).toEqual({
      kind: 'label_values',
      label: 'job',
      match: 'up{path="/a,b)c{d}", x=\'y,z\'}',
    });
    expect(parseVariableQuery('label_values(up{q="say \\"hi, there\\")"}, job)')).toEqual({
      kind: 'label_values',
      label: 'job',
      match: 'up{q="say \\"hi, there\\")"}',
    });
    expect(parseVariableQuery('label_values(up{q=`raw\\`}, job)')).toEqual({
      kind: 'label_values',
      label: 'job',
      match: 'up{q=`raw\\`}',
    });
  });

  it('parses selectors without a metric name and with nested functions', () => {
    expect(parseVariableQuery('label_values({job="mysql"}, instance)')).toEqual({
      kind: 'label_values',
      label: 'instance',
      match: '{job="mysql"}',
    });
    expect(parseVariableQuery('label_values(sum by (job, instance) (up), instance)')).toEqual({
      kind: 'label_values',
      label: 'instance',
      match: 'sum by (job, instance) (up)',
    });
  });

  it('treats an empty selector as none', () => {
    expect(parseVariableQuery('label_values({}, job)')).toEqual({ kind: 'label_values', label: 'job' });
    expect(parseVariableQuery('label_values({ } , job)')).toEqual({ kind: 'label_values', label: 'job' });
  });

  it('accepts a quoted label name (UTF-8 label names)', () => {
    expect(parseVariableQuery('label_values(up, "job")')).toEqual({ kind: 'label_values', label: 'job', match: 'up' });
    expect(parseVariableQuery("label_values('service.name')")).toEqual({ kind: 'label_values', label: 'service.name' });
  });

  it('rejects a missing or malformed label name', () => {
    expect(parseVariableQuery('label_values()')).toMatchObject({ kind: 'invalid', error: expect.stringMatching(/label name is required/) });
    expect(parseVariableQuery('label_values(up{job="x"})')).toMatchObject({
      kind: 'invalid',
      error: expect.stringMatching(/is not a label name/),
    });
    expect(parseVariableQuery('label_values(up, 1abc)')).toMatchObject({ kind: 'invalid' });
    expect(parseVariableQuery('label_values(up, $undefined_var)')).toMatchObject({ kind: 'invalid' });
    expect(parseVariableQuery('label_values(, job)')).toMatchObject({
      kind: 'invalid',
      error: expect.stringMatching(/selector before "," is empty/),
    });
  });
});

describe('parseVariableQuery: metrics', () => {
  it('parses metrics(regex)', () => {
    expect(parseVariableQuery('metrics(node_.*)')).toEqual({ kind: 'metrics', regex: 'node_.*' });
    expect(parseVariableQuery(' metrics ( ^mysql_(global|info)_ ) ')).toEqual({
      kind: 'metrics',
      regex: '^mysql_(global|info)_',
    });
    expect(parseVariableQuery('metrics("up|scrape_.*")')).toEqual({ kind: 'metrics', regex: 'up|scrape_.*' });
  });

  it('rejects an empty or invalid regex', () => {
    expect(parseVariableQuery('metrics()')).toMatchObject({ kind: 'invalid', error: expect.stringMatching(/regex is required/) });
    expect(parseVariableQuery('metrics(a[)')).toMatchObject({ kind: 'invalid' });
    expect(parseVariableQuery('metrics(*abc)')).toMatchObject({ kind: 'invalid', error: expect.stringMatching(/invalid regex/) });
  });
});

describe('parseVariableQuery: query_result', () => {
  it('keeps the whole query, with its own parentheses, commas and braces', () => {
    expect(parseVariableQuery('query_result(up)')).toEqual({ kind: 'query_result', query: 'up' });
    expect(
      parseVariableQuery('query_result( topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))) )')
    ).toEqual({
      kind: 'query_result',
      query: 'topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])))',
    });
    expect(parseVariableQuery('query_result(label_replace(up, "x", "$1", "job", "(.*)"))')).toEqual({
      kind: 'query_result',
      query: 'label_replace(up, "x", "$1", "job", "(.*)")',
    });
  });

  it('rejects an empty query, unbalanced brackets and trailing text', () => {
    expect(parseVariableQuery('query_result()')).toMatchObject({ kind: 'invalid' });
    expect(parseVariableQuery('query_result(sum(up)')).toMatchObject({ kind: 'invalid', error: expect.stringMatching(/missing "\)"/) });
    expect(parseVariableQuery('query_result(up{job="a"])')).toMatchObject({
      kind: 'invalid',
      error: expect.stringMatching(/unexpected "\]"/),
    });
    expect(parseVariableQuery('query_result(up) > 0')).toMatchObject({
      kind: 'invalid',
      error: expect.stringMatching(/unexpected text after/),
    });
    expect(parseVariableQuery('query_result(up{job="a)')).toMatchObject({
      kind: 'invalid',
      error: expect.stringMatching(/unterminated quoted string/),
    });
  });
});

describe('parseVariableQuery: other input', () => {
  it('is empty for blank input', () => {
    expect(parseVariableQuery('')).toEqual({ kind: 'empty' });
    expect(parseVariableQuery('   \n')).toEqual({ kind: 'empty' });
    expect(parseVariableQuery(undefined)).toEqual({ kind: 'empty' });
  });

  it('reads anything else as a series selector, as the Prometheus datasource does', () => {
    expect(parseVariableQuery('up{job="node"}')).toEqual({ kind: 'series', match: 'up{job="node"}' });
    expect(parseVariableQuery('  node_uname_info ')).toEqual({ kind: 'series', match: 'node_uname_info' });
    // Function names are case-sensitive, as in Grafana.
    expect(parseVariableQuery('Label_Values(job)')).toEqual({ kind: 'series', match: 'Label_Values(job)' });
    // Not one of the variable functions.
    expect(parseVariableQuery('rate(up[5m])')).toEqual({ kind: 'series', match: 'rate(up[5m])' });
    expect(parseVariableQuery('label_valuesx(job)')).toEqual({ kind: 'series', match: 'label_valuesx(job)' });
  });
});
