import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  // Drizzle and others check `constructor.name`; minifiers must not rename FailoverPool.
  keepNames: true,
  external: ['pg', 'pg-connection-string', 'debug'],
})
