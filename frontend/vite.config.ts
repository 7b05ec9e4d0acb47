import { cpSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * Builds what Grafana's plugin tooling builds: one AMD `module.js` (Grafana loads
 * plugin modules through SystemJS's AMD support) with the libraries Grafana shares
 * with plugins left as external AMD dependencies.
 */
const EXTERNALS = [
  '@grafana/data',
  '@grafana/runtime',
  '@grafana/ui',
  'react',
  'react-dom',
  '@emotion/css',
  'rxjs',
  'lodash',
];

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  // Classic JSX (React.createElement): 'react' is a shared module in every Grafana
  // version, 'react/jsx-runtime' is not.
  esbuild: { jsx: 'transform', jsxFactory: 'React.createElement', jsxFragment: 'React.Fragment' },
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    sourcemap: true,
    copyPublicDir: false,
    modulePreload: false,
    rollupOptions: {
      input: 'src/module.ts',
      external: (id) => EXTERNALS.some((e) => id === e || id.startsWith(`${e}/`)),
      preserveEntrySignatures: 'exports-only',
      output: {
        format: 'amd',
        entryFileNames: 'module.js',
        inlineDynamicImports: true,
      },
    },
  },
  plugins: [
    {
      name: 'arrowmon-copy-img',
      apply: 'build',
      closeBundle() {
        cpSync(`${root}img`, `${root}dist/img`, { recursive: true });
      },
    },
  ],
  test: {
    environment: 'jsdom',
    setupFiles: ['src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
    // The @grafana/* ESM builds import CSS files and named exports of CommonJS
    // modules, which Node cannot load itself; let Vite transform them.
    server: { deps: { inline: [/@grafana\//] } },
    onConsoleLog: (log) => !log.includes('i18next is made possible'),
  },
});
