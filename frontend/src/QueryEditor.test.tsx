import React, { useState } from 'react';
import { DataSourceInstanceSettings, dateTime, TimeRange } from '@grafana/data';
import { act, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';

import { DataSource } from './datasource';
import { QueryEditor } from './QueryEditor';
import { Options, Query } from './types';

const baseQuery: Query = {
  refId: 'A',
  expr: 'up',
  legendFormat: '{{instance}}',
  interval: '30s',
  range: true,
  instant: false,
  format: 'table',
  exemplar: false,
};

function setup(query: Query = baseQuery) {
  const onChange = vi.fn();
  const onRunQuery = vi.fn();
  render(
    <QueryEditor datasource={{} as DataSource} query={query} onChange={onChange} onRunQuery={onRunQuery} />
  );
  return { onChange, onRunQuery };
}

describe('QueryEditor', () => {
  it('updates expr and keeps the other fields when a query is typed', () => {
    const { onChange, onRunQuery } = setup();
    const input = screen.getByLabelText(/^Query/, { selector: 'textarea' });
    fireEvent.change(input, { target: { value: 'rate(node_cpu_seconds_total[5m])' } });
    expect(onChange).toHaveBeenCalledTimes(1);
    expect(onChange).toHaveBeenCalledWith({ ...baseQuery, expr: 'rate(node_cpu_seconds_total[5m])' });
    expect(onRunQuery).not.toHaveBeenCalled();
  });

  it('runs the query on blur and on Shift+Enter, not on plain Enter', () => {
    const { onRunQuery } = setup();
    const input = screen.getByLabelText(/^Query/, { selector: 'textarea' });
    fireEvent.keyDown(input, { key: 'Enter' });
    expect(onRunQuery).not.toHaveBeenCalled();
    fireEvent.keyDown(input, { key: 'Enter', shiftKey: true });
    expect(onRunQuery).toHaveBeenCalledTimes(1);
    fireEvent.blur(input);
    expect(onRunQuery).toHaveBeenCalledTimes(2);
  });

  it('updates legend format and min step', () => {
    const { onChange } = setup();
    fireEvent.change(screen.getByLabelText('Legend format'), { target: { value: '{{job}}' } });
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, legendFormat: '{{job}}' });
    fireEvent.change(screen.getByLabelText(/^Min step/), { target: { value: '1m' } });
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, interval: '1m' });
  });

  it('sets instant/range from the query type', () => {
    const { onChange, onRunQuery } = setup();
    fireEvent.click(screen.getByLabelText('Instant'));
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, instant: true, range: false });
    fireEvent.click(screen.getByLabelText('Both'));
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, instant: true, range: true });
    expect(onRunQuery).toHaveBeenCalledTimes(2);
  });

  it('switches an instant query back to range', () => {
    const instantQuery: Query = { ...baseQuery, instant: true, range: false };
    const { onChange } = setup(instantQuery);
    expect((screen.getByLabelText('Instant') as HTMLInputElement).checked).toBe(true);
    fireEvent.click(screen.getByLabelText('Range'));
    expect(onChange).toHaveBeenLastCalledWith({ ...instantQuery, instant: false, range: true });
  });

  it('treats a query without range/instant flags as a range query', () => {
    setup({ refId: 'A', expr: 'up' });
    expect((screen.getByLabelText('Range') as HTMLInputElement).checked).toBe(true);
    expect((screen.getByLabelText('Instant') as HTMLInputElement).checked).toBe(false);
  });

  it('toggles exemplars', () => {
    const { onChange } = setup();
    fireEvent.click(screen.getByLabelText(/^Exemplars/));
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, exemplar: true });
  });
});

/** Picks an option of a Grafana Select (react-select) by its label. */
async function pickOption(input: HTMLElement, label: string) {
  fireEvent.keyDown(input, { key: 'ArrowDown' });
  fireEvent.click(await screen.findByText(label, { selector: 'span' }));
}

describe('QueryEditor options', () => {
  it('sets the format to table or heatmap', async () => {
    const { onChange, onRunQuery } = setup({ ...baseQuery, format: 'time_series' });
    await pickOption(screen.getByLabelText(/^Format/), 'Heatmap');
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, format: 'heatmap' });
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  it('has the Prometheus legend modes: Auto (__auto), Verbose (empty) and Custom', async () => {
    const { onChange } = setup();
    // A template is the Custom mode, with its input.
    expect(screen.getByText('Custom')).toBeTruthy();
    await pickOption(screen.getByLabelText(/^Legend$/), 'Auto');
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, legendFormat: '__auto' });
    await pickOption(screen.getByLabelText(/^Legend$/), 'Verbose');
    expect(onChange).toHaveBeenLastCalledWith({ ...baseQuery, legendFormat: '' });
  });

  it('hides the template input in Auto mode', () => {
    setup({ ...baseQuery, legendFormat: '__auto' });
    expect(screen.getByText('Auto')).toBeTruthy();
    expect(screen.queryByLabelText('Legend format')).toBeNull();
  });
});

// ---- Autocompletion and metric metadata, against mocked resources ----

const instanceSettings = {
  id: 1,
  uid: 'arrowmon',
  type: 'arrowmon-metrics-datasource',
  name: 'arrowmon',
  access: 'proxy',
  readOnly: false,
  jsonData: {},
  meta: { id: 'arrowmon-metrics-datasource' },
} as unknown as DataSourceInstanceSettings<Options>;

const RESOURCES: Record<string, unknown> = {
  'api/v1/label/__name__/values': { status: 'success', data: ['node_cpu_seconds_total', 'node_load1', 'up'] },
  'api/v1/labels': { status: 'success', data: ['__name__', 'instance', 'job'] },
  'api/v1/label/job/values': { status: 'success', data: ['mysql', 'node'] },
  'api/v1/metadata': {
    status: 'success',
    data: {
      node_load1: [{ type: 'gauge', help: '1m load average.', unit: '' }],
      node_cpu_seconds_total: [{ type: 'counter', help: 'Seconds the CPUs spent in each mode.', unit: '' }],
    },
  },
};

const range: TimeRange = {
  from: dateTime(1_700_000_000_000),
  to: dateTime(1_700_003_600_000),
  raw: { from: 'now-1h', to: 'now' },
};

function datasourceWith(resources: Record<string, unknown> = RESOURCES) {
  const ds = new DataSource(instanceSettings);
  const getResource = vi.fn(async (path: string) => {
    const body = resources[path];
    if (body === undefined) {
      throw { status: 404, data: { status: 'error', errorType: 'not_found', error: `unknown API path /${path}` } };
    }
    if (body instanceof Error) {
      throw { status: 500, data: { status: 'error', errorType: 'internal', error: body.message } };
    }
    return body;
  });
  (ds as unknown as { getResource: unknown }).getResource = getResource;
  return { ds, getResource };
}

/** The editor as Grafana hosts it: the query comes back in through props. */
function setupLive(initial: Query, ds: DataSource) {
  const onChange = vi.fn();
  const onRunQuery = vi.fn();
  function Host() {
    const [query, setQuery] = useState(initial);
    return (
      <QueryEditor
        datasource={ds}
        query={query}
        range={range}
        onChange={(q) => {
          onChange(q);
          setQuery(q);
        }}
        onRunQuery={onRunQuery}
      />
    );
  }
  render(<Host />);
  const textarea = screen.getByLabelText(/^Query/, { selector: 'textarea' }) as HTMLTextAreaElement;
  const type = (value: string, cursor = value.length) =>
    fireEvent.change(textarea, { target: { value, selectionStart: cursor, selectionEnd: cursor } });
  return { onChange, onRunQuery, textarea, type, last: () => onChange.mock.calls[onChange.mock.calls.length - 1][0] as Query };
}

const optionLabels = () => screen.getAllByRole('option').map((o) => o.textContent);

describe('QueryEditor autocompletion', () => {
  it('offers label values after {job=" and inserts the chosen one', async () => {
    const { ds, getResource } = datasourceWith();
    const { type, textarea, last } = setupLive({ refId: 'A', expr: '' }, ds);
    type('up{job="');
    const list = await screen.findByRole('listbox', { name: 'Suggestions' });
    expect(within(list).getAllByRole('option').map((o) => o.textContent)).toEqual(['valuemysqljob', 'valuenodejob']);
    expect(getResource).toHaveBeenCalledWith(
      'api/v1/label/job/values',
      { 'match[]': 'up', start: '1700000000', end: '1700003600' },
      { showErrorAlert: false }
    );

    fireEvent.keyDown(textarea, { key: 'ArrowDown' });
    expect(screen.getAllByRole('option')[1].getAttribute('aria-selected')).toBe('true');
    fireEvent.keyDown(textarea, { key: 'Enter' });
    expect(last()).toEqual({ refId: 'A', expr: 'up{job="node"' });
    expect(screen.queryByRole('listbox')).toBeNull();
    expect(textarea.value).toBe('up{job="node"');
    expect(textarea.selectionStart).toBe('up{job="node"'.length);
  });

  it('filters label values by what is typed and accepts one with the mouse', async () => {
    const { ds } = datasourceWith();
    const { type, last, onRunQuery } = setupLive({ refId: 'A', expr: '' }, ds);
    type('sum(rate(x{job="my"}[5m]))', 'sum(rate(x{job="my'.length);
    await waitFor(() => expect(optionLabels()).toEqual(['valuemysqljob']));
    fireEvent.mouseDown(screen.getByRole('option'));
    expect(last().expr).toBe('sum(rate(x{job="mysql"}[5m]))');
    // Choosing with the mouse does not blur the field (which would run the query).
    expect(onRunQuery).not.toHaveBeenCalled();
  });

  it('offers the label names of the metric in a selector', async () => {
    const { ds, getResource } = datasourceWith();
    const { type } = setupLive({ refId: 'A', expr: '' }, ds);
    type('node_load1{');
    await waitFor(() => expect(optionLabels()).toEqual(['labelinstance', 'labeljob']));
    expect(getResource).toHaveBeenCalledWith(
      'api/v1/labels',
      { 'match[]': 'node_load1', start: '1700000000', end: '1700003600' },
      { showErrorAlert: false }
    );
  });

  it('offers metric names with their type, and function names', async () => {
    const { ds } = datasourceWith();
    const { type, textarea, last } = setupLive({ refId: 'A', expr: '' }, ds);
    type('node');
    await waitFor(() => expect(optionLabels()).toEqual(['metricnode_cpu_seconds_totalcounter', 'metricnode_load1gauge']));
    expect(screen.getByText('Seconds the CPUs spent in each mode.')).toBeTruthy();

    type('irat');
    await waitFor(() => expect(optionLabels()).toEqual(['fnirateirate(v range-vector)']));
    fireEvent.keyDown(textarea, { key: 'Tab' });
    expect(last().expr).toBe('irate(');
  });

  it('closes the list with Escape and reopens it with Ctrl+Space', async () => {
    const { ds } = datasourceWith();
    const { type, textarea } = setupLive({ refId: 'A', expr: '' }, ds);
    type('up{job="');
    await screen.findByRole('listbox');
    fireEvent.keyDown(textarea, { key: 'Escape' });
    expect(screen.queryByRole('listbox')).toBeNull();
    textarea.setSelectionRange(8, 8);
    fireEvent.keyDown(textarea, { key: ' ', ctrlKey: true });
    expect(await screen.findByRole('listbox')).toBeTruthy();
  });

  it('shows why suggestions are missing when a resource fails', async () => {
    const { ds } = datasourceWith({ ...RESOURCES, 'api/v1/label/job/values': new Error('store unavailable') });
    const { type } = setupLive({ refId: 'A', expr: '' }, ds);
    type('up{job="');
    expect((await screen.findByRole('alert')).textContent).toContain('store unavailable');
  });

  it('shows the HELP and TYPE of the metric being edited', async () => {
    const { ds } = datasourceWith();
    setupLive({ refId: 'A', expr: 'rate(node_cpu_seconds_total{mode="idle"}[5m])' }, ds);
    const info = await screen.findByTestId('arrowmon-metric-info');
    expect(info.textContent).toContain('node_cpu_seconds_total');
    expect(info.textContent).toContain('TYPE counter');
    expect(info.textContent).toContain('Seconds the CPUs spent in each mode.');
  });

  it('follows the cursor between metrics', async () => {
    const { ds } = datasourceWith();
    const { textarea } = setupLive({ refId: 'A', expr: 'node_load1 / node_cpu_seconds_total' }, ds);
    expect((await screen.findByTestId('arrowmon-metric-info')).textContent).toContain('TYPE gauge');
    textarea.setSelectionRange(20, 20);
    fireEvent.click(textarea);
    await waitFor(() => expect(screen.getByTestId('arrowmon-metric-info').textContent).toContain('TYPE counter'));
  });

  it('caches names between keystrokes', async () => {
    const { ds, getResource } = datasourceWith();
    const { type } = setupLive({ refId: 'A', expr: '' }, ds);
    type('up{job="');
    await screen.findByRole('listbox');
    type('up{job="n');
    await waitFor(() => expect(optionLabels()).toEqual(['valuenodejob']));
    await act(async () => {});
    expect(getResource.mock.calls.filter((c) => c[0] === 'api/v1/label/job/values')).toHaveLength(1);
  });
});
