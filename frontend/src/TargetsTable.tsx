import React, { useCallback, useEffect, useRef, useState } from 'react';
import { Alert, Badge, BadgeColor, Button, useTheme2 } from '@grafana/ui';

import { ActiveTarget, fetchTargets, ResourceClient, ResourceError, TargetHealth } from './resources';

interface Props {
  client: ResourceClient;
  /** Changes when the datasource is saved: the table reloads. */
  reloadKey?: unknown;
  /** For tests: the current time in ms. */
  now?: () => number;
}

type State =
  | { status: 'loading' }
  | { status: 'forbidden' }
  | { status: 'error'; message: string }
  | { status: 'done'; targets: ActiveTarget[] };

const HEALTH_COLOR: Record<TargetHealth, BadgeColor> = { up: 'green', down: 'red', unknown: 'darkgrey' };

/** `12.3 ms`, `1.52 s`. */
export function formatScrapeDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds <= 0) {
    return '–';
  }
  return seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
}

/** `never`, `4s ago`, `3m ago`. */
export function formatLastScrape(rfc3339: string, nowMs: number): string {
  const t = Date.parse(rfc3339);
  if (!rfc3339 || Number.isNaN(t) || t <= 0) {
    return 'never';
  }
  const s = Math.max(0, Math.round((nowMs - t) / 1000));
  if (s < 120) {
    return `${s}s ago`;
  }
  if (s < 7200) {
    return `${Math.round(s / 60)}m ago`;
  }
  return `${Math.round(s / 3600)}h ago`;
}

function labelsText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .filter(([k]) => k !== 'job' && k !== 'instance')
    .map(([k, v]) => `${k}="${v}"`)
    .join(', ');
}

/** Target health from `api/v1/targets` (Editors and Admins only). */
export function TargetsTable({ client, reloadKey, now = Date.now }: Props) {
  const theme = useTheme2();
  const [state, setState] = useState<State>({ status: 'loading' });
  const seq = useRef(0);

  const load = useCallback(() => {
    const mine = ++seq.current;
    setState({ status: 'loading' });
    fetchTargets(client)
      .then((targets) => {
        if (mine === seq.current) {
          setState({ status: 'done', targets });
        }
      })
      .catch((err: ResourceError) => {
        if (mine !== seq.current) {
          return;
        }
        setState(err.status === 403 ? { status: 'forbidden' } : { status: 'error', message: err.message });
      });
  }, [client]);

  useEffect(() => {
    load();
    return () => {
      seq.current++;
    };
  }, [load, reloadKey]);

  const cell: React.CSSProperties = {
    padding: theme.spacing(0.5, 1),
    borderBottom: `1px solid ${theme.colors.border.weak}`,
    verticalAlign: 'top',
    textAlign: 'left',
  };

  let body: React.ReactNode;
  if (state.status === 'loading') {
    body = <p>Loading targets…</p>;
  } else if (state.status === 'forbidden') {
    body = (
      <Alert severity="info" title="Target health is visible to Editors and Admins">
        Target URLs and errors can reveal configuration, so only Editors and Admins of this organization see them.
      </Alert>
    );
  } else if (state.status === 'error') {
    body = (
      <Alert severity="error" title="Could not load targets">
        {state.message}
      </Alert>
    );
  } else if (state.targets.length === 0) {
    body = <p>No targets. Add <code>scrape_configs</code> above and save.</p>;
  } else {
    const up = state.targets.filter((t) => t.health === 'up').length;
    const nowMs = now();
    body = (
      <>
        <p data-testid="arrowmon-targets-summary">
          {up} of {state.targets.length} targets up
        </p>
        <table aria-label="Scrape targets" style={{ width: '100%', borderCollapse: 'collapse' }}>
          <thead>
            <tr>
              {['Job', 'Endpoint', 'Health', 'Labels', 'Last scrape', 'Duration', 'Error'].map((h) => (
                <th key={h} style={{ ...cell, fontWeight: theme.typography.fontWeightMedium }}>
                  {h}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {state.targets.map((t, i) => (
              <tr key={`${t.scrapePool}|${t.scrapeUrl}|${i}`}>
                <td style={cell}>{t.scrapePool}</td>
                <td style={{ ...cell, wordBreak: 'break-all' }}>{t.scrapeUrl}</td>
                <td style={cell}>
                  <Badge text={t.health} color={HEALTH_COLOR[t.health] ?? 'darkgrey'} />
                </td>
                <td style={{ ...cell, fontFamily: theme.typography.fontFamilyMonospace }}>{labelsText(t.labels ?? {})}</td>
                <td style={cell}>{formatLastScrape(t.lastScrape, nowMs)}</td>
                <td style={cell}>{formatScrapeDuration(t.lastScrapeDuration)}</td>
                <td style={{ ...cell, color: theme.colors.error.text }}>{t.lastError}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </>
    );
  }

  return (
    <div>
      <p style={{ color: theme.colors.text.secondary }}>
        Targets of the saved settings: save the datasource to apply changes to the scrape config.{' '}
        <Button size="sm" variant="secondary" icon="sync" onClick={load} disabled={state.status === 'loading'}>
          Refresh
        </Button>
      </p>
      {body}
    </div>
  );
}
