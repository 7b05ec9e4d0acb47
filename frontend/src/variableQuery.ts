/**
 * The Prometheus datasource's variable query syntax:
 *
 *   label_names()                 all label names
 *   label_names(metric_regex)     label names of series whose name matches (a selector is used as is)
 *   label_values(label)           values of a label
 *   label_values(selector, label) values of a label among the series matching the selector
 *   metrics(regex)                metric names matching the (unanchored) regex
 *   query_result(query)           one line per result element of an instant query
 *   anything else                 a series selector: one line per matching series
 *
 * Pure: no Grafana imports. Quotes (", ', `), escapes and brackets are honoured,
 * so selectors may contain commas, parentheses and braces inside label values.
 */

export type VariableQuery =
  | { kind: 'empty' }
  | { kind: 'label_names'; match?: string }
  | { kind: 'label_values'; label: string; match?: string }
  | { kind: 'metrics'; regex: string }
  | { kind: 'query_result'; query: string }
  | { kind: 'series'; match: string }
  | { kind: 'invalid'; error: string };

const FUNCTIONS = ['label_names', 'label_values', 'metrics', 'query_result'] as const;
type FunctionName = (typeof FUNCTIONS)[number];

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface ScanResult {
  /** Index of the bracket that closes the one at `open`, or -1. */
  close: number;
  /** Indexes of commas at the top level inside the brackets. */
  commas: number[];
  error?: string;
}

const CLOSERS: Record<string, string> = { '(': ')', '{': '}', '[': ']' };

/**
 * Scans from the opening bracket at `open` to its closing bracket, skipping
 * quoted strings (with backslash escapes in "..." and '...', none in `...`).
 */
function scanBrackets(text: string, open: number): ScanResult {
  const stack: string[] = [];
  const commas: number[] = [];
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < text.length && text[j] !== c) {
        j += c !== '`' && text[j] === '\\' ? 2 : 1;
      }
      if (j >= text.length) {
        return { close: -1, commas, error: `unterminated ${c === '`' ? 'raw string' : 'quoted string'}` };
      }
      i = j;
      continue;
    }
    if (c in CLOSERS) {
      stack.push(CLOSERS[c]);
    } else if (c === ')' || c === '}' || c === ']') {
      const expected = stack.pop();
      if (c !== expected) {
        return { close: -1, commas, error: `unexpected "${c}" at position ${i + 1}` };
      }
      if (stack.length === 0) {
        return { close: i, commas };
      }
    } else if (c === ',' && stack.length === 1) {
      commas.push(i);
    }
  }
  return { close: -1, commas, error: 'missing ")"' };
}

/** `"job"` → `job`; anything unquoted is returned trimmed. */
function unquote(value: string): string {
  const v = value.trim();
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'" || v[0] === '`') && v[v.length - 1] === v[0]) {
    const inner = v.slice(1, -1);
    return v[0] === '`' ? inner : inner.replace(/\\(.)/g, '$1');
  }
  return v;
}

function isQuoted(value: string): boolean {
  const v = value.trim();
  return v.length >= 2 && (v[0] === '"' || v[0] === "'" || v[0] === '`') && v[v.length - 1] === v[0];
}

/** `{}`, blank: no selector (as the Prometheus datasource treats them). */
function isBlankSelector(selector: string): boolean {
  return selector.replace(/\s+/g, '') === '' || selector.replace(/\s+/g, '') === '{}';
}

export function parseVariableQuery(input: string | undefined | null): VariableQuery {
  const text = (input ?? '').trim();
  if (text === '') {
    return { kind: 'empty' };
  }
  const head = /^([a-z_]+)\s*\(/.exec(text);
  const name = head?.[1] as FunctionName | undefined;
  if (!head || !name || !FUNCTIONS.includes(name)) {
    return { kind: 'series', match: text };
  }
  const open = head[0].length - 1;
  const scan = scanBrackets(text, open);
  if (scan.error || scan.close < 0) {
    return { kind: 'invalid', error: `${name}(): ${scan.error ?? 'missing ")"'}` };
  }
  if (scan.close !== text.length - 1) {
    return {
      kind: 'invalid',
      error: `${name}(): unexpected text after ")": ${JSON.stringify(text.slice(scan.close + 1).trim())}`,
    };
  }
  const inner = text.slice(open + 1, scan.close);
  const arg = inner.trim();

  switch (name) {
    case 'label_names': {
      if (arg === '') {
        return { kind: 'label_names' };
      }
      // The Prometheus datasource reads the argument as a metric name regex; a
      // selector is used as is.
      const match = /[{}]/.test(arg) ? arg : `{__name__=~".*${unquote(arg)}.*"}`;
      return { kind: 'label_names', match };
    }
    case 'label_values': {
      if (arg === '') {
        return { kind: 'invalid', error: 'label_values(): a label name is required, e.g. label_values(job)' };
      }
      // The label is after the last top-level comma; everything before it is the selector.
      const last = scan.commas.length > 0 ? scan.commas[scan.commas.length - 1] - open - 1 : -1;
      const selector = last >= 0 ? inner.slice(0, last).trim() : '';
      const labelArg = (last >= 0 ? inner.slice(last + 1) : inner).trim();
      if (last >= 0 && selector === '') {
        return { kind: 'invalid', error: 'label_values(): the selector before "," is empty' };
      }
      const label = unquote(labelArg);
      if (label === '' || (!isQuoted(labelArg) && !LABEL_NAME.test(label))) {
        return {
          kind: 'invalid',
          error: `label_values(): ${JSON.stringify(labelArg)} is not a label name`,
        };
      }
      return isBlankSelector(selector) ? { kind: 'label_values', label } : { kind: 'label_values', label, match: selector };
    }
    case 'metrics': {
      const regex = unquote(arg);
      if (regex === '') {
        return { kind: 'invalid', error: 'metrics(): a regex is required, e.g. metrics(node_.*)' };
      }
      try {
        new RegExp(regex);
      } catch (e) {
        return { kind: 'invalid', error: `metrics(): invalid regex: ${(e as Error).message}` };
      }
      return { kind: 'metrics', regex };
    }
    case 'query_result': {
      if (arg === '') {
        return { kind: 'invalid', error: 'query_result(): a PromQL query is required' };
      }
      return { kind: 'query_result', query: arg };
    }
  }
}
