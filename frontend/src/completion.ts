/**
 * Autocompletion for the query editor, without an editor library: what to offer
 * at the cursor of a PromQL expression, and how to insert the chosen item.
 * Pure: the editor fetches the names this asks for and renders the list.
 */

import { AGGREGATIONS, FUNCTIONS, KEYWORDS, LABEL_LIST_KEYWORDS } from './promqlFunctions';

export type Quote = '"' | "'" | '`';

export type CompletionContext =
  /** Metric names, functions, aggregations and keywords. */
  | { kind: 'metric'; prefix: string; from: number; to: number }
  /** Label names, of `metric`'s series when known. */
  | { kind: 'label-name'; prefix: string; from: number; to: number; metric?: string }
  /** Values of `label` among the series matching `match` (metric and the matchers before this one). */
  | {
      kind: 'label-value';
      label: string;
      prefix: string;
      from: number;
      to: number;
      match?: string;
      /** The string's quote, or null when the value is not opened yet (`{job=|`). */
      quote: Quote | null;
      /** Whether the string already has its closing quote. */
      closed: boolean;
    }
  /** Range and subquery durations, inside `[...]`. */
  | { kind: 'duration'; prefix: string; from: number; to: number };

export type SuggestionKind = 'metric' | 'function' | 'keyword' | 'label' | 'value' | 'duration';

export interface Suggestion {
  label: string;
  kind: SuggestionKind;
  /** Shown beside the label: a signature, a metric type... */
  detail?: string;
  /** Longer text for the selected item (function doc, metric HELP). */
  documentation?: string;
}

const WORD = /[a-zA-Z0-9_:]/;
const METRIC_BEFORE_BRACE = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/;
const COMPLETE_MATCHER = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/g;
const MATCHER_START = /(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*$/;
const RESERVED = new Set([...KEYWORDS, ...FUNCTIONS.map((f) => f.name), ...AGGREGATIONS.map((a) => a.name)]);

interface Open {
  c: string;
  i: number;
}

/** The metric name written just before the `{` at `brace`, if any. */
function metricBefore(text: string, brace: number): string | undefined {
  const m = METRIC_BEFORE_BRACE.exec(text.slice(0, brace));
  if (!m || RESERVED.has(m[1]) || /^\d/.test(m[1])) {
    return undefined;
  }
  return m[1];
}

/** `metric{a="1",b=~"x"}` from the metric and the complete matchers in `inside`. */
function selectorFor(metric: string | undefined, inside: string): string | undefined {
  const matchers = [...inside.matchAll(COMPLETE_MATCHER)].map((m) => `${m[1]}${m[2]}${m[3]}`);
  if (matchers.length === 0) {
    return metric;
  }
  return `${metric ?? ''}{${matchers.join(',')}}`;
}

/**
 * What to complete at `pos`. `explicit` (Ctrl+Space) offers metrics and
 * functions even before anything is typed.
 */
export function completionContext(text: string, pos: number, explicit = false): CompletionContext | null {
  const stack: Open[] = [];
  let i = 0;
  while (i < pos) {
    const c = text[i];
    if (c === '#') {
      const nl = text.indexOf('\n', i);
      if (nl < 0 || nl >= pos) {
        return null; // in a comment
      }
      i = nl + 1;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < text.length && text[j] !== c) {
        j += c !== '`' && text[j] === '\\' ? 2 : 1;
      }
      if (j >= pos) {
        return stringContext(text, pos, stack, i, c, j < text.length ? j : -1);
      }
      i = j + 1;
      continue;
    }
    if (c === '(' || c === '{' || c === '[') {
      stack.push({ c, i });
    } else if (c === ')' || c === '}' || c === ']') {
      stack.pop();
    }
    i++;
  }

  let from = pos;
  while (from > 0 && WORD.test(text[from - 1])) {
    from--;
  }
  let to = pos;
  while (to < text.length && WORD.test(text[to])) {
    to++;
  }
  const prefix = text.slice(from, pos);
  const top = stack[stack.length - 1];

  if (top?.c === '[') {
    let start = from;
    if (start > 0 && text[start - 1] === '$') {
      start--;
    }
    const before = text.slice(top.i + 1, start);
    if (/^\s*$/.test(before) || /:\s*$/.test(before)) {
      return { kind: 'duration', prefix: text.slice(start, pos), from: start, to };
    }
    return null;
  }
  if (from > 0 && text[from - 1] === '$') {
    return null; // a template variable
  }
  if (top?.c === '{') {
    const inside = text.slice(top.i + 1, from);
    if (/(?:^|,)\s*$/.test(inside)) {
      if (/^\d/.test(prefix)) {
        return null;
      }
      return { kind: 'label-name', prefix, from, to, metric: metricBefore(text, top.i) };
    }
    const m = MATCHER_START.exec(inside);
    if (m && prefix === '' && !/^\s*["'`]/.test(text.slice(pos))) {
      const current = inside.length - m[0].length + (m[0].startsWith(',') ? 1 : 0);
      return {
        kind: 'label-value',
        label: m[1],
        prefix: '',
        from: pos,
        to: pos,
        match: selectorFor(metricBefore(text, top.i), inside.slice(0, current)),
        quote: null,
        closed: false,
      };
    }
    return null;
  }
  if (top?.c === '(') {
    const kw = /([a-zA-Z_]+)\s*$/.exec(text.slice(0, top.i));
    if (kw && LABEL_LIST_KEYWORDS.includes(kw[1].toLowerCase())) {
      if (/(?:^|,)\s*$/.test(text.slice(top.i + 1, from))) {
        return { kind: 'label-name', prefix, from, to };
      }
      return null;
    }
  }
  if (/^\d/.test(prefix)) {
    return null; // a number
  }
  if (prefix === '' && !explicit) {
    return null;
  }
  return { kind: 'metric', prefix, from, to };
}

function stringContext(
  text: string,
  pos: number,
  stack: Open[],
  start: number,
  quote: Quote,
  close: number
): CompletionContext | null {
  const top = stack[stack.length - 1];
  if (top?.c !== '{') {
    return null;
  }
  const inside = text.slice(top.i + 1, start);
  const m = MATCHER_START.exec(inside);
  if (!m) {
    return null;
  }
  const current = inside.length - m[0].length + (m[0].startsWith(',') ? 1 : 0);
  return {
    kind: 'label-value',
    label: m[1],
    prefix: unescapeString(text.slice(start + 1, pos), quote),
    from: start + 1,
    to: close >= 0 ? close : pos,
    match: selectorFor(metricBefore(text, top.i), inside.slice(0, current)),
    quote,
    closed: close >= 0,
  };
}

function unescapeString(s: string, quote: Quote): string {
  return quote === '`' ? s : s.replace(/\\(.)/g, '$1');
}

export function escapeString(value: string, quote: Quote): string {
  if (quote === '`') {
    return value;
  }
  return value.replace(/\\/g, '\\\\').replace(quote === '"' ? /"/g : /'/g, `\\${quote}`).replace(/\n/g, '\\n');
}

/**
 * Items whose label contains the prefix (case-insensitive), those starting with
 * it first. An item identical to what is typed is not offered.
 */
export function filterSuggestions(items: Suggestion[], prefix: string, limit = 100): Suggestion[] {
  const p = prefix.toLowerCase();
  const starts: Suggestion[] = [];
  const contains: Suggestion[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const key = `${item.kind}:${item.label}`;
    if (seen.has(key) || item.label === prefix) {
      continue;
    }
    seen.add(key);
    const l = item.label.toLowerCase();
    if (l.startsWith(p)) {
      starts.push(item);
    } else if (p !== '' && l.includes(p)) {
      contains.push(item);
    }
  }
  return [...starts, ...contains].slice(0, limit);
}

/** The expression and cursor after inserting `item` in `ctx`. */
export function applySuggestion(
  text: string,
  ctx: CompletionContext,
  item: Suggestion
): { text: string; cursor: number } {
  let insert = item.label;
  let cursorOffset: number | undefined;
  let to = ctx.to;
  if (ctx.kind === 'label-value') {
    if (ctx.quote === null) {
      insert = `"${escapeString(item.label, '"')}"`;
    } else {
      insert = escapeString(item.label, ctx.quote) + ctx.quote;
      if (ctx.closed) {
        to = ctx.to + 1; // replace the closing quote too, then put the cursor after it
      }
    }
  } else if (item.kind === 'function') {
    if (text[to] === '(') {
      cursorOffset = insert.length + 1;
    } else {
      insert += '(';
    }
  }
  const out = text.slice(0, ctx.from) + insert + text.slice(to);
  return { text: out, cursor: ctx.from + (cursorOffset ?? insert.length) };
}

export interface MetricRef {
  name: string;
  from: number;
  to: number;
}

const LABEL_LIST = new Set(LABEL_LIST_KEYWORDS);

/**
 * Metric names written in an expression (identifiers outside strings, selectors,
 * ranges and `by (...)` lists that are not functions, keywords or numbers).
 */
export function metricsInExpression(text: string): MetricRef[] {
  const out: MetricRef[] = [];
  const stack: string[] = [];
  let labelListDepth = -1;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '#') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl + 1;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < text.length && text[j] !== c) {
        j += c !== '`' && text[j] === '\\' ? 2 : 1;
      }
      i = j + 1;
      continue;
    }
    if (c === '(' || c === '{' || c === '[') {
      stack.push(c);
      i++;
      continue;
    }
    if (c === ')' || c === '}' || c === ']') {
      stack.pop();
      if (stack.length <= labelListDepth) {
        labelListDepth = -1;
      }
      i++;
      continue;
    }
    if (c === '$') {
      i++;
      while (i < text.length && /[\w{}]/.test(text[i])) {
        i++;
      }
      continue;
    }
    if (/[a-zA-Z_:]/.test(c) && !(i > 0 && /[0-9.]/.test(text[i - 1]))) {
      let j = i;
      while (j < text.length && WORD.test(text[j])) {
        j++;
      }
      const name = text.slice(i, j);
      const rest = text.slice(j);
      const inSelectorOrRange = stack.includes('{') || stack.includes('[');
      if (LABEL_LIST.has(name.toLowerCase()) && /^\s*\(/.test(rest)) {
        labelListDepth = stack.length;
      } else if (
        !inSelectorOrRange &&
        labelListDepth < 0 &&
        !RESERVED.has(name) &&
        !RESERVED.has(name.toLowerCase()) &&
        !/^\s*\(/.test(rest) &&
        !/^(inf|nan)$/i.test(name)
      ) {
        out.push({ name, from: i, to: j });
      }
      i = j;
      continue;
    }
    // Numbers (incl. 1e3, 0x1f, durations like 5m) are skipped whole.
    if (/[0-9.]/.test(c)) {
      while (i < text.length && /[0-9a-zA-Z_.]/.test(text[i])) {
        i++;
      }
      continue;
    }
    i++;
  }
  return out;
}

/** The metric at the cursor, or else the first metric of the expression. */
export function metricAt(text: string, pos: number): string | undefined {
  const refs = metricsInExpression(text);
  return (refs.find((r) => pos >= r.from && pos <= r.to) ?? refs[0])?.name;
}
