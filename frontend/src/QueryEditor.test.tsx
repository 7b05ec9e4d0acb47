import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';

import { DataSource } from './datasource';
import { QueryEditor } from './QueryEditor';
import { Query } from './types';

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
    fireEvent.change(screen.getByLabelText(/^Legend/), { target: { value: '{{job}}' } });
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
