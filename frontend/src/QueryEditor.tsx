import React, { ChangeEvent, KeyboardEvent, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import {
  InlineField,
  InlineFieldRow,
  InlineSwitch,
  Input,
  RadioButtonGroup,
  Select,
  TextArea,
  useTheme2,
} from '@grafana/ui';

import {
  applySuggestion,
  CompletionContext,
  completionContext,
  filterSuggestions,
  metricAt,
  Suggestion,
} from './completion';
import { DataSource } from './datasource';
import { LanguageProvider, lookupMetadata } from './languageProvider';
import { rangeSeconds } from './metricFind';
import { AGGREGATIONS, FUNCTIONS, KEYWORDS, RANGE_DURATIONS } from './promqlFunctions';
import { MetricMetadata, SeriesRange } from './resources';
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

/** Legend modes of the Prometheus datasource's query editor. */
type LegendMode = 'auto' | 'verbose' | 'custom';
export const LEGEND_AUTO = '__auto';

const LEGEND_MODES: Array<SelectableValue<LegendMode>> = [
  { label: 'Auto', value: 'auto', description: 'Only the labels that differ between series' },
  { label: 'Verbose', value: 'verbose', description: 'All labels' },
  { label: 'Custom', value: 'custom', description: 'A template, e.g. {{instance}}' },
];

function legendMode(legendFormat: string | undefined): LegendMode {
  if (legendFormat === LEGEND_AUTO) {
    return 'auto';
  }
  return legendFormat === undefined || legendFormat === '' ? 'verbose' : 'custom';
}

function queryType(query: Query): QueryType {
  const instant = !!query.instant;
  // A query without either flag is a range query (Prometheus datasource behaviour).
  const range = query.range ?? !instant;
  if (instant && range) {
    return 'both';
  }
  return instant ? 'instant' : 'range';
}

interface Completion {
  /** The expression the context was computed on. */
  text: string;
  ctx: CompletionContext;
  items: Suggestion[];
  selected: number;
  error?: string;
}

function fnSuggestions(): Suggestion[] {
  return [
    ...FUNCTIONS.map((f) => ({ label: f.name, kind: 'function' as const, detail: f.signature, documentation: f.doc })),
    ...AGGREGATIONS.map((f) => ({ label: f.name, kind: 'function' as const, detail: f.signature, documentation: f.doc })),
  ];
}

/** All candidates for a context (unfiltered), and the error of a failed fetch. */
async function loadSuggestions(
  ctx: CompletionContext,
  provider: LanguageProvider | undefined,
  range: SeriesRange | undefined
): Promise<{ items: Suggestion[]; error?: string }> {
  try {
    switch (ctx.kind) {
      case 'metric': {
        let metrics: Suggestion[] = [];
        let error: string | undefined;
        if (provider) {
          try {
            const [names, meta] = await Promise.all([
              provider.metricNames(range),
              provider.metadata().catch(() => ({}) as Record<string, MetricMetadata[]>),
            ]);
            metrics = names.map((name) => {
              const m = lookupMetadata(meta, name);
              return { label: name, kind: 'metric', detail: m?.type, documentation: m?.help };
            });
          } catch (e) {
            error = (e as Error).message;
          }
        }
        const keywords: Suggestion[] = KEYWORDS.map((k) => ({ label: k, kind: 'keyword' }));
        return { items: [...fnSuggestions(), ...metrics, ...keywords], error };
      }
      case 'label-name': {
        const names = provider ? await provider.labelNames(ctx.metric, range) : [];
        return { items: names.map((n) => ({ label: n, kind: 'label' })) };
      }
      case 'label-value': {
        const values = provider ? await provider.labelValues(ctx.label, ctx.match, range) : [];
        return { items: values.map((v) => ({ label: v, kind: 'value', detail: ctx.label })) };
      }
      case 'duration':
        return { items: RANGE_DURATIONS.map((d) => ({ label: d, kind: 'duration' })) };
    }
  } catch (e) {
    return { items: [], error: (e as Error).message };
  }
}

const KIND_LABEL: Record<Suggestion['kind'], string> = {
  metric: 'metric',
  function: 'fn',
  keyword: 'kw',
  label: 'label',
  value: 'value',
  duration: 'range',
};

export function QueryEditor({ query, onChange, onRunQuery, datasource, range }: Props) {
  const idPrefix = `arrowmon-${query.refId}`;
  const theme = useTheme2();
  const expr = query.expr ?? '';
  const provider: LanguageProvider | undefined = datasource?.languageProvider;
  const seconds = useMemo(() => (range ? rangeSeconds(range) : undefined), [range]);

  const textareaRef = useRef<HTMLTextAreaElement>(null);
  const pendingCursor = useRef<number | null>(null);
  const requestSeq = useRef(0);
  const [completion, setCompletion] = useState<Completion | null>(null);
  // -1 until the cursor is in the field: the expression's first metric is described.
  const [cursor, setCursor] = useState(-1);
  const [metadata, setMetadata] = useState<{ metric: string; meta?: MetricMetadata } | null>(null);

  // Put the cursor after an inserted suggestion once the new expression is rendered.
  useLayoutEffect(() => {
    const el = textareaRef.current;
    if (pendingCursor.current !== null && el && el.value.length >= pendingCursor.current) {
      el.setSelectionRange(pendingCursor.current, pendingCursor.current);
      pendingCursor.current = null;
    }
  }, [expr]);

  // HELP/TYPE of the metric at the cursor (or the expression's first metric).
  const metric = useMemo(() => metricAt(expr, cursor), [expr, cursor]);
  useEffect(() => {
    if (!metric || !provider) {
      setMetadata(null);
      return;
    }
    let live = true;
    provider
      .metricMetadata(metric)
      .then((meta) => live && setMetadata({ metric, meta }))
      .catch(() => live && setMetadata({ metric }));
    return () => {
      live = false;
    };
  }, [metric, provider]);

  const closeCompletion = () => {
    requestSeq.current++;
    setCompletion(null);
  };

  const requestCompletion = (text: string, pos: number, explicit = false) => {
    const ctx = completionContext(text, pos, explicit);
    const seq = ++requestSeq.current;
    if (!ctx) {
      setCompletion(null);
      return;
    }
    loadSuggestions(ctx, provider, seconds).then(({ items, error }) => {
      if (seq !== requestSeq.current) {
        return; // superseded by a later keystroke
      }
      const filtered = filterSuggestions(items, ctx.prefix);
      setCompletion(filtered.length > 0 || error ? { text, ctx, items: filtered, selected: 0, error } : null);
    });
  };

  const accept = (item: Suggestion) => {
    if (!completion) {
      return;
    }
    const out = applySuggestion(completion.text, completion.ctx, item);
    pendingCursor.current = out.cursor;
    closeCompletion();
    setCursor(out.cursor);
    onChange({ ...query, expr: out.text });
  };

  const onExprChange = (e: ChangeEvent<HTMLTextAreaElement>) => {
    const text = e.currentTarget.value;
    const pos = e.currentTarget.selectionStart ?? text.length;
    setCursor(pos);
    onChange({ ...query, expr: text });
    requestCompletion(text, pos);
  };

  const onExprKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && e.shiftKey) {
      e.preventDefault();
      closeCompletion();
      onRunQuery();
      return;
    }
    if (e.key === ' ' && e.ctrlKey) {
      e.preventDefault();
      const el = e.currentTarget;
      requestCompletion(el.value, el.selectionStart ?? el.value.length, true);
      return;
    }
    if (!completion) {
      return;
    }
    const n = completion.items.length;
    switch (e.key) {
      case 'ArrowDown':
      case 'ArrowUp':
        if (n > 0) {
          e.preventDefault();
          const step = e.key === 'ArrowDown' ? 1 : n - 1;
          setCompletion({ ...completion, selected: (completion.selected + step) % n });
        }
        break;
      case 'Enter':
      case 'Tab':
        if (n > 0) {
          e.preventDefault();
          accept(completion.items[completion.selected]);
        }
        break;
      case 'Escape':
        e.preventDefault();
        e.stopPropagation();
        closeCompletion();
        break;
    }
  };

  const onCursorMove = (e: React.SyntheticEvent<HTMLTextAreaElement>) => {
    const el = e.currentTarget;
    setCursor(el.selectionStart ?? el.value.length);
    const key = (e as { key?: string }).key;
    if (key && ['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(key)) {
      closeCompletion();
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

  const onLegendModeChange = (option: SelectableValue<LegendMode>) => {
    const legendFormat = option.value === 'auto' ? LEGEND_AUTO : option.value === 'verbose' ? '' : '{{label_name}}';
    onChange({ ...query, legendFormat });
    onRunQuery();
  };

  const mode = legendMode(query.legendFormat);
  const selected = completion?.items[completion.selected];

  return (
    <div>
      <InlineFieldRow>
        <InlineField label="Query" htmlFor={`${idPrefix}-expr`} labelWidth={14} grow
          tooltip="PromQL expression. Shift+Enter or leaving the field runs the query; Ctrl+Space offers completions.">
          <div style={{ position: 'relative', width: '100%' }}>
            <TextArea
              ref={textareaRef}
              id={`${idPrefix}-expr`}
              value={expr}
              placeholder='rate(node_cpu_seconds_total{mode!="idle"}[$__rate_interval])'
              rows={Math.min(12, Math.max(2, expr.split('\n').length))}
              spellCheck={false}
              autoComplete="off"
              style={{ fontFamily: theme.typography.fontFamilyMonospace }}
              aria-autocomplete="list"
              aria-expanded={!!completion}
              aria-controls={completion ? `${idPrefix}-suggestions` : undefined}
              onChange={onExprChange}
              onKeyDown={onExprKeyDown}
              onKeyUp={onCursorMove}
              onClick={onCursorMove}
              onBlur={() => {
                closeCompletion();
                onRunQuery();
              }}
            />
            {completion && (
              <div
                style={{
                  position: 'absolute',
                  top: '100%',
                  left: 0,
                  zIndex: theme.zIndex.dropdown,
                  minWidth: 320,
                  maxWidth: '100%',
                  background: theme.colors.background.primary,
                  border: `1px solid ${theme.colors.border.medium}`,
                  boxShadow: theme.shadows.z3,
                  fontFamily: theme.typography.fontFamilyMonospace,
                  fontSize: theme.typography.bodySmall.fontSize,
                }}
              >
                {completion.error && (
                  <div role="alert" style={{ padding: theme.spacing(0.5, 1), color: theme.colors.error.text }}>
                    Suggestions unavailable: {completion.error}
                  </div>
                )}
                {completion.items.length > 0 && (
                  <ul
                    id={`${idPrefix}-suggestions`}
                    role="listbox"
                    aria-label="Suggestions"
                    style={{ listStyle: 'none', margin: 0, padding: 0, maxHeight: 240, overflowY: 'auto' }}
                  >
                    {completion.items.map((item, i) => (
                      <li
                        key={`${item.kind}:${item.label}`}
                        role="option"
                        aria-selected={i === completion.selected}
                        // Keep the focus in the textarea: a blur would close the list and run the query.
                        onMouseDown={(e) => {
                          e.preventDefault();
                          accept(item);
                        }}
                        onMouseEnter={() => setCompletion({ ...completion, selected: i })}
                        style={{
                          display: 'flex',
                          gap: theme.spacing(1),
                          padding: theme.spacing(0.25, 1),
                          cursor: 'pointer',
                          background: i === completion.selected ? theme.colors.action.selected : undefined,
                        }}
                      >
                        <span style={{ color: theme.colors.text.secondary, width: 40, flexShrink: 0 }}>
                          {KIND_LABEL[item.kind]}
                        </span>
                        <span style={{ flexGrow: 1, overflow: 'hidden', textOverflow: 'ellipsis' }}>{item.label}</span>
                        {item.detail && <span style={{ color: theme.colors.text.secondary }}>{item.detail}</span>}
                      </li>
                    ))}
                  </ul>
                )}
                {selected?.documentation && (
                  <div
                    style={{
                      padding: theme.spacing(0.5, 1),
                      borderTop: `1px solid ${theme.colors.border.weak}`,
                      fontFamily: theme.typography.fontFamily,
                      color: theme.colors.text.secondary,
                    }}
                  >
                    {selected.documentation}
                  </div>
                )}
              </div>
            )}
          </div>
        </InlineField>
      </InlineFieldRow>
      {metadata?.meta && (
        <div
          data-testid="arrowmon-metric-info"
          style={{ margin: theme.spacing(0, 0, 0.5, 14.5), fontSize: theme.typography.bodySmall.fontSize }}
        >
          <code>{metadata.metric}</code>{' '}
          <span style={{ color: theme.colors.text.secondary }}>
            TYPE {metadata.meta.type}
            {metadata.meta.unit ? ` · UNIT ${metadata.meta.unit}` : ''}
          </span>
          {metadata.meta.help && <span> — {metadata.meta.help}</span>}
        </div>
      )}
      <InlineFieldRow>
        <InlineField label="Legend" htmlFor={`${idPrefix}-legend-mode`} labelWidth={14}
          tooltip="Series names. Auto: only the labels that differ; Verbose: all labels; Custom: a template such as {{instance}}.">
          <Select inputId={`${idPrefix}-legend-mode`} width={14} options={LEGEND_MODES} value={mode}
            onChange={onLegendModeChange} />
        </InlineField>
        {mode === 'custom' && (
          <Input
            id={`${idPrefix}-legend`}
            aria-label="Legend format"
            width={24}
            value={query.legendFormat ?? ''}
            placeholder="{{instance}}"
            onChange={(e: ChangeEvent<HTMLInputElement>) => onChange({ ...query, legendFormat: e.currentTarget.value })}
            onBlur={onRunQuery}
          />
        )}
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
