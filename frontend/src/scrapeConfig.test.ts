import { describe, expect, it } from 'vitest';

import { parseDurationMs } from './duration';
import { globalScrapeInterval, secureReferences } from './scrapeConfig';

describe('globalScrapeInterval', () => {
  it('reads block style, with comments, quotes and other keys', () => {
    const yaml = [
      '# arrowmon scrape config',
      'global:',
      '  external_labels:',
      '    scrape_interval: 99s   # nested, not this one',
      '  scrape_timeout: 10s',
      '  scrape_interval: "20s" # this one',
      'scrape_configs:',
      '  - job_name: node',
      '    scrape_interval: 5s',
    ].join('\n');
    expect(globalScrapeInterval(yaml)).toBe('20s');
  });

  it('reads flow style', () => {
    expect(globalScrapeInterval("global: {scrape_timeout: 5s, scrape_interval: '45s'}\n")).toBe('45s');
  });

  it('ignores job-level intervals and a missing global section', () => {
    expect(globalScrapeInterval('scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n')).toBeUndefined();
    expect(globalScrapeInterval('global:\n  evaluation_interval: 1m\nscrape_configs: []\n')).toBeUndefined();
    expect(globalScrapeInterval('#global:\n#  scrape_interval: 1m\n')).toBeUndefined();
    expect(globalScrapeInterval(undefined)).toBeUndefined();
  });

  it('handles CRLF line endings', () => {
    expect(globalScrapeInterval('global:\r\n  scrape_interval: 1m\r\n')).toBe('1m');
  });
});

describe('secureReferences', () => {
  it('lists each ${secure.NAME} once, in order', () => {
    const yaml = 'a: ${secure.bearerToken}\nb: ${secure.basicAuthPassword}\nc: ${secure.bearerToken}\nd: ${other.x}';
    expect(secureReferences(yaml)).toEqual(['bearerToken', 'basicAuthPassword']);
  });
});

describe('parseDurationMs', () => {
  it('parses Prometheus durations', () => {
    expect(parseDurationMs('15s')).toBe(15_000);
    expect(parseDurationMs('1m30s')).toBe(90_000);
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('1h')).toBe(3_600_000);
  });

  it('rejects anything else', () => {
    expect(parseDurationMs('')).toBeUndefined();
    expect(parseDurationMs('15')).toBeUndefined();
    expect(parseDurationMs('$__interval')).toBeUndefined();
    expect(parseDurationMs('1.5m')).toBeUndefined();
  });
});
