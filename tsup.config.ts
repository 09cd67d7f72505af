import { defineConfig } from 'tsup'

export default defineConfig({
  // The main entry and one per integration (pg-failover-pool/typeorm, ...). Splitting puts the code
  // they share in common chunks, so an application that imports both gets one FailoverPool class
  // (per module format), and the declaration files share one declaration of it.
  entry: { index: 'src/index.ts', advanced: 'src/advanced.ts', typeorm: 'src/integrations/typeorm.ts', otel: 'src/integrations/otel.ts', sequelize: 'src/integrations/sequelize.ts', 'pg-boss': 'src/integrations/pg-boss.ts' },
  format: ['esm', 'cjs'],
  splitting: true,
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  // Not keepNames: it wraps every closure in a defineProperty call, which cost ~1 µs per query on the
  // hot path. The exported classes set their `name` explicitly instead (it survives any minifier).
  external: ['pg', 'pg-connection-string', 'debug', '@opentelemetry/api'],
})
