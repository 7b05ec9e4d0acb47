import React, { ChangeEvent, useRef, useState } from 'react';
import { Alert, Button, Field, TextArea, useTheme2 } from '@grafana/ui';

import { ResourceClient, ResourceError } from './resources';

/** What the backend says of a YAML text: valid with a summary, or its error and where. */
export type YamlCheck =
  | { valid: true; summary: string }
  | { valid: false; error: string; line: number | null; column: number | null };

type Validation =
  | { state: 'idle' }
  | { state: 'checking' }
  | { state: 'valid'; summary: string }
  | { state: 'invalid'; error: string; line: number | null; column: number | null; text: string }
  | { state: 'failed'; message: string; forbidden: boolean };

/** `line N: message` (and the column when known), as shown under the YAML. */
export function formatValidationError(error: string, line: number | null, column: number | null): string {
  if (!line) {
    return error;
  }
  return column ? `line ${line}, column ${column}: ${error}` : `line ${line}: ${error}`;
}

/** Offsets of line `line` (1-based) in `text`, or undefined past the end. */
function lineRange(text: string, line: number): [number, number] | undefined {
  const lines = text.split('\n');
  if (line < 1 || line > lines.length) {
    return undefined;
  }
  let start = 0;
  for (let i = 0; i < line - 1; i++) {
    start += lines[i].length + 1;
  }
  return [start, start + lines[line - 1].length];
}

/** The lines around an error, the error line marked and a caret under its column. */
function ErrorExcerpt({ text, line, column, testIdPrefix }: { text: string; line: number; column: number | null; testIdPrefix: string }) {
  const theme = useTheme2();
  const lines = text.split(/\r?\n/);
  if (line > lines.length) {
    return null;
  }
  const first = Math.max(1, line - 2);
  const last = Math.min(lines.length, line + 1);
  const width = String(last).length;
  const rows: React.ReactNode[] = [];
  for (let n = first; n <= last; n++) {
    const isError = n === line;
    rows.push(
      <div
        key={n}
        data-testid={isError ? `${testIdPrefix}-error-line` : undefined}
        style={isError ? { background: theme.colors.error.transparent } : undefined}
      >
        {isError ? '>' : ' '} {String(n).padStart(width)} | {lines[n - 1]}
      </div>
    );
    if (isError && column) {
      rows.push(
        <div key={`${n}-caret`} aria-hidden style={{ color: theme.colors.error.text }}>
          {' '.repeat(width + 5 + column - 1)}^
        </div>
      );
    }
  }
  return (
    <pre data-testid={`${testIdPrefix}-error-excerpt`} style={{ margin: theme.spacing(1, 0), whiteSpace: 'pre' }}>
      {rows}
    </pre>
  );
}

interface Props {
  id: string;
  /** The field's name, also in the button and messages ("Scrape config", "Rules"). */
  label: string;
  description: React.ReactNode;
  placeholder: string;
  rows: number;
  value: string;
  onChange: (value: string) => void;
  /** The datasource's resources; without one (not saved yet) nothing is validated. */
  client?: ResourceClient;
  validate: (client: ResourceClient, text: string) => Promise<YamlCheck>;
  testIdPrefix: string;
}

/**
 * A YAML text area checked by the backend on blur and with a button: the error is
 * shown with its line and column, the lines around it, and a button that selects
 * the line in the text area.
 */
export function YamlConfigField({ id, label, description, placeholder, rows, value, onChange, client, validate, testIdPrefix }: Props) {
  const ref = useRef<HTMLTextAreaElement>(null);
  const [validation, setValidation] = useState<Validation>({ state: 'idle' });
  const seqRef = useRef(0);
  const name = label.toLowerCase();

  const check = (text: string) => {
    if (!client) {
      return;
    }
    const seq = ++seqRef.current;
    setValidation({ state: 'checking' });
    validate(client, text)
      .then((r) => {
        if (seq !== seqRef.current) {
          return;
        }
        setValidation(
          r.valid
            ? { state: 'valid', summary: r.summary }
            : { state: 'invalid', error: r.error, line: r.line ?? null, column: r.column ?? null, text }
        );
      })
      .catch((err: ResourceError) => {
        if (seq === seqRef.current) {
          setValidation({ state: 'failed', message: err.message, forbidden: err.status === 403 });
        }
      });
  };
  const showLine = (line: number) => {
    const el = ref.current;
    const range = el ? lineRange(el.value, line) : undefined;
    if (el && range) {
      el.focus();
      el.setSelectionRange(range[0], range[1]);
      // Scroll so the line is visible (about one line-height per line).
      const lineHeight = parseFloat(getComputedStyle(el).lineHeight) || 18;
      el.scrollTop = Math.max(0, (line - 3) * lineHeight);
    }
  };

  return (
    <>
      <Field label={label} description={description}>
        <TextArea
          ref={ref}
          id={id}
          rows={rows}
          spellCheck={false}
          style={{ fontFamily: 'monospace' }}
          invalid={validation.state === 'invalid'}
          value={value}
          placeholder={placeholder}
          onChange={(e: ChangeEvent<HTMLTextAreaElement>) => {
            if (validation.state === 'valid') {
              setValidation({ state: 'idle' });
            }
            onChange(e.currentTarget.value);
          }}
          onBlur={(e: React.FocusEvent<HTMLTextAreaElement>) => check(e.currentTarget.value)}
        />
      </Field>
      {client && (
        <div style={{ marginBottom: 16 }}>
          <Button
            variant="secondary"
            icon={validation.state === 'checking' ? 'spinner' : 'check'}
            disabled={validation.state === 'checking'}
            onClick={() => check(ref.current?.value ?? value)}
          >
            Validate {name}
          </Button>{' '}
          {validation.state === 'valid' && (
            <span data-testid={`${testIdPrefix}-validation-ok`}>
              {label} {label.endsWith('s') ? 'are' : 'is'} valid: {validation.summary}.
            </span>
          )}
        </div>
      )}
      {validation.state === 'invalid' && (
        <Alert severity="error" title={`${label} ${label.endsWith('s') ? 'are' : 'is'} invalid`}>
          <div data-testid={`${testIdPrefix}-validation-error`}>
            {formatValidationError(validation.error, validation.line, validation.column)}
          </div>
          {validation.line !== null && validation.line > 0 && (
            <>
              <ErrorExcerpt text={validation.text} line={validation.line} column={validation.column} testIdPrefix={testIdPrefix} />
              <Button size="sm" variant="secondary" fill="outline" onClick={() => showLine(validation.line!)}>
                Show line {validation.line}
              </Button>
            </>
          )}
        </Alert>
      )}
      {validation.state === 'failed' && (
        <Alert severity={validation.forbidden ? 'info' : 'warning'} title={`${label} not validated`}>
          {validation.forbidden
            ? `Only Editors and Admins of this organization can validate the ${name}.`
            : validation.message}
        </Alert>
      )}
    </>
  );
}
