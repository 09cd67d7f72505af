/**
 * The pools the contract tests (test/integration/contract.test.ts) hold to the same assertions:
 * node-postgres's own `pg.Pool` as the reference, and `FailoverPool` over one and over three
 * endpoints of a real cluster.
 *
 * Every subject takes plain pg.Pool options (`max`, `idleTimeoutMillis`, `connectionTimeoutMillis`,
 * `maxUses`, `allowExitOnIdle`, ...). pg.Pool gets them next to the primary's address; FailoverPool
 * gets them next to its `endpoints` list.
 */
import pg from 'pg'
import { FailoverPool } from '../../src/index.js'
import type { Cluster, ClusterNode } from './cluster.js'

/** pg.Pool options without the server address (the subject supplies that). */
export type ContractPoolOptions = Omit<pg.PoolConfig, 'host' | 'port' | 'connectionString' | 'user' | 'password' | 'database'>

/** How the server address is given: a connection URL (with the password in it) or a config object. */
export type AddressForm = 'url' | 'config'

export type SubjectKind = 'pg.Pool' | 'FailoverPool'

export interface Subject {
  /** Shown in the test names. */
  readonly name: string
  readonly kind: SubjectKind
  /** The nodes the pool is given, in the order it is given them. */
  nodes(cluster: Cluster): ClusterNode[]
  /** A new pool on the cluster with these pg.Pool options. */
  create(cluster: Cluster, options?: ContractPoolOptions, form?: AddressForm): pg.Pool
}

/** The cluster's initial primary. */
export function primaryOf(cluster: Cluster): ClusterNode {
  const primary = cluster.nodes[0]
  if (primary === undefined) throw new Error('cluster has no nodes')
  return primary
}

function address(node: ClusterNode, form: AddressForm): string | pg.ClientConfig {
  return form === 'url' ? node.url : node.config
}

/** node-postgres's pg.Pool on the primary: the reference behaviour. */
export const pgPoolSubject: Subject = {
  name: 'pg.Pool (primary)',
  kind: 'pg.Pool',
  nodes: (cluster) => [primaryOf(cluster)],
  create(cluster, options = {}, form = 'url') {
    const primary = primaryOf(cluster)
    return form === 'url' ? new pg.Pool({ connectionString: primary.url, ...options }) : new pg.Pool({ ...primary.config, ...options })
  },
}

function failoverSubject(name: string, nodes: (cluster: Cluster) => ClusterNode[]): Subject {
  return {
    name,
    kind: 'FailoverPool',
    nodes,
    create(cluster, options = {}, form = 'url') {
      const endpoints = nodes(cluster).map((n) => address(n, form))
      return new FailoverPool({ endpoints, ...options } as ConstructorParameters<typeof FailoverPool>[0])
    },
  }
}

/** FailoverPool with the primary as its only endpoint. */
export const singleEndpointSubject: Subject = failoverSubject('FailoverPool (1 endpoint: primary)', (cluster) => [primaryOf(cluster)])

/**
 * FailoverPool over the whole cluster. A standby is listed first, so anything that only works
 * because the first endpoint happens to be the primary shows up.
 */
export const threeEndpointSubject: Subject = failoverSubject('FailoverPool (3 endpoints: standby, primary, standby)', (cluster) => {
  const [primary, first, second] = cluster.nodes
  if (primary === undefined || first === undefined || second === undefined) throw new Error('the contract tests need a cluster with 2 standbys')
  return [first, primary, second]
})

export const SUBJECTS: readonly Subject[] = [pgPoolSubject, singleEndpointSubject, threeEndpointSubject]
