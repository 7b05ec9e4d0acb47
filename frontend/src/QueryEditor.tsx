import React, { ChangeEvent, KeyboardEvent } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, InlineSwitch, Input, RadioButtonGroup, Select, TextArea } from '@grafana/ui';

import { DataSource } from './datasource';
import { Options, Query, QueryFormat } from './types';

type Props = QueryEditorProps<DataSource, Query, Options>;

type QueryType = 'range' | 'instant' | 'both';

const QUERY_TYPES: Array<SelectableValue<QueryType>> = [
  { label: 'Range', value: 'range', description: 'Evaluate over the time range' },
  { label: 'Instant', value: 'instant', description: 'Evaluate once, at the end of the time range' },
  { label: 'Both', value: 'both', description: 'Run a range and an instant query' },
];

const FORMATS: Array<SelectableValue<QueryFormat>> = [
  { label: 'Time series', value: 'time_series' },
  { label: 'Table', value: 'table' },
  { label: 'Heatmap', value: 'heatmap' },
];

function queryType(query: Query): QueryType {
  const instant = !!query.instant;
  // A query without either flag is a range query (Prometheus datasource behaviour).
  const range = query.range ?? !instant;
  if (instant && range) {
    return 'both';
  }
  return instant ? 'instant' : 'range';
}

export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const idPrefix = `arrowmon-${query.refId}`;

  const onExprChange = (e: ChangeEvent<HTMLTextAreaElement>) => {
    onChange({ ...query, expr: e.currentTarget.value });
  };

  const onExprKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && e.shiftKey) {
      e.preventDefault();
      onRunQuery();
    }
  };

  const onQueryTypeChange = (value: QueryType) => {
    onChange({ ...query, range: value !== 'instant', instant: value !== 'range' });
    onRunQuery();
  };

  const onFormatChange = (option: SelectableValue<QueryFormat>) => {
    onChange({ ...query, format: option.value ?? 'time_series' });
    onRunQuery();
  };

  return (
    <div>
      <InlineFieldRow>
        <InlineField label="Query" htmlFor={`${idPrefix}-expr`} labelWidth={14} grow
          tooltip="PromQL expression. Shift+Enter or leaving the field runs the query.">
          <TextArea
            id={`${idPrefix}-expr`}
            value={query.expr ?? ''}
            placeholder='rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval])'
            rows={Math.min(12, Math.max(2, (query.expr ?? '').split('\n').length))}
            spellCheck={false}
            style={{ fontFamily: 'monospace' }}
            onChange={onExprChange}
            onKeyDown={onExprKeyDown}
            onBlur={onRunQuery}
          />
        </InlineField>
      </InlineFieldRow>
      <InlineFieldRow>
        <InlineField label="Legend" htmlFor={`${idPrefix}-legend`} labelWidth={14}
          tooltip="Series name template, e.g. {{instance}}. Empty: the full label set.">
          <Input
            id={`${idPrefix}-legend`}
            width={24}
            value={query.legendFormat ?? ''}
            placeholder="{{instance}}"
            onChange={(e: ChangeEvent<HTMLInputElement>) => onChange({ ...query, legendFormat: e.currentTarget.value })}
            onBlur={onRunQuery}
          />
        </InlineField>
        <InlineField label="Min step" htmlFor={`${idPrefix}-interval`} labelWidth={10}
          tooltip="Lower bound of the step and of $__interval, e.g. 30s. Empty: the datasource scrape interval.">
          <Input
            id={`${idPrefix}-interval`}
            width={12}
            value={query.interval ?? ''}
            placeholder="auto"
            onChange={(e: ChangeEvent<HTMLInputElement>) => onChange({ ...query, interval: e.currentTarget.value })}
            onBlur={onRunQuery}
          />
        </InlineField>
        <InlineField label="Type" labelWidth={8}>
          <RadioButtonGroup aria-label="Query type" options={QUERY_TYPES} value={queryType(query)}
            onChange={onQueryTypeChange} />
        </InlineField>
        <InlineField label="Format" htmlFor={`${idPrefix}-format`} labelWidth={8}>
          <Select inputId={`${idPrefix}-format`} width={16} options={FORMATS}
            value={query.format ?? 'time_series'} onChange={onFormatChange} />
        </InlineField>
        <InlineField label="Exemplars" htmlFor={`${idPrefix}-exemplar`} labelWidth={11}>
          <InlineSwitch id={`${idPrefix}-exemplar`} value={!!query.exemplar}
            onChange={(e: React.FormEvent<HTMLInputElement>) => {
              onChange({ ...query, exemplar: e.currentTarget.checked });
              onRunQuery();
            }} />
        </InlineField>
      </InlineFieldRow>
    </div>
  );
}
