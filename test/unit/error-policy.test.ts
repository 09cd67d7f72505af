import { describe, expect, it } from 'vitest'
import { classifyError, failedBeforeSending, neverRan, refusedByProxy } from '../../src/error-policy.js'

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code })

describe('classifyError (the SQLSTATE policy table)', () => {
  it.each([
    ['ECONNREFUSED', 'connection'],
    ['ECONNRESET', 'connection'],
    ['ETIMEDOUT', 'connection'],
    ['EPIPE', 'connection'],
    ['08006', 'connection'],
    ['08P01', 'connection'],
    ['57P01', 'connection'],
    ['57P02', 'connection'],
    ['57P03', 'connection'],
    ['25006', 'read-only'],
    ['28P01', 'configuration'],
    ['28000', 'configuration'],
    ['3D000', 'configuration'],
    ['42601', 'statement'],
    ['23505', 'statement'],
    ['40001', 'statement'],
  ])('%s is %s', (code, expected) => {
    expect(classifyError(withCode(code))).toBe(expected)
  })

  it('a server ERROR in class 08 (bind mismatch) is a statement error; FATAL ones are connection failures', () => {
    expect(classifyError(Object.assign(withCode('08P01'), { severity: 'ERROR' }))).toBe('statement')
    expect(classifyError(Object.assign(withCode('08P01'), { severity: 'FATAL' }))).toBe('connection')
  })

  it('knows node-postgres messages without codes', () => {
    expect(classifyError(new Error('Connection terminated unexpectedly'))).toBe('connection')
    expect(classifyError(new Error('Connection terminated due to connection timeout'))).toBe('connection')
    // query_timeout fires on slow statements as well as dead nodes; probes judge the node.
    expect(classifyError(new Error('Query read timeout'))).toBe('statement')
    // pg-pool's own queue timeout is pool exhaustion, not a node failure.
    expect(classifyError(new Error('timeout exceeded when trying to connect'))).toBe('statement')
    expect(classifyError(new Error('syntax'))).toBe('statement')
    expect(classifyError('not an error')).toBe('statement')
  })

  it('looks through causes and aggregate errors', () => {
    expect(classifyError(new Error('wrapped', { cause: withCode('ECONNREFUSED') }))).toBe('connection')
    expect(classifyError(new AggregateError([withCode('ECONNREFUSED')], 'multi'))).toBe('connection')
  })

  it('treats only "not queryable" refusals as provably unsent', () => {
    expect(failedBeforeSending(new Error('Client has encountered a connection error and is not queryable'))).toBe(true)
    expect(failedBeforeSending(new Error('Client was closed and is not queryable'))).toBe(true)
    expect(failedBeforeSending(new Error('Connection terminated unexpectedly'))).toBe(false)
  })
  // The exact texts PgBouncer 1.18 sends (FATAL, SQLSTATE 08P01), as observed in the HA tests.
  it.each([
    'query_wait_timeout',
    'server login has been failing, try again later (server_login_retry)',
    'no more connections allowed (max_client_conn)',
    'pgbouncer cannot connect to server',
    'client_login_timeout (server down)',
  ])('a PgBouncer refusal never ran: %s', (message) => {
    const err = Object.assign(withCode('08P01', message), { severity: 'FATAL' })
    expect(classifyError(err)).toBe('connection')
    expect(refusedByProxy(err)).toBe(true)
    expect(neverRan(err)).toBe(true)
  })

  it('other FATALs and PgBouncer messages about statements that did run are not refusals', () => {
    expect(neverRan(Object.assign(withCode('08P01', 'server conn crashed?'), { severity: 'FATAL' }))).toBe(false)
    expect(neverRan(Object.assign(withCode('08P01', 'query_timeout'), { severity: 'FATAL' }))).toBe(false)
    expect(neverRan(withCode('57P01', 'terminating connection due to administrator command'))).toBe(false)
    // The right text with another code is not PgBouncer speaking.
    expect(neverRan(withCode('XX000', 'query_wait_timeout'))).toBe(false)
  })
})

describe('isOutcomeUnknownError on what ORMs throw', () => {
  it("recognises Prisma's rebuilt adapter errors for a lost statement, never for what provably did not run", async () => {
    const { isOutcomeUnknownError } = await import('../../src/errors.js')
    const prismaError = (cause: unknown) => Object.assign(new Error('Database error'), { code: 'P2039', meta: { driverAdapterError: Object.assign(new Error('DriverAdapterError'), { cause }) } })
    expect(isOutcomeUnknownError(prismaError({ kind: 'postgres', code: '57P01', severity: 'FATAL', originalCode: '57P01', originalMessage: 'terminating connection due to administrator command' }))).toBe(true)
    expect(isOutcomeUnknownError(prismaError({ kind: 'ConnectionClosed' }))).toBe(true)
    // A SQL error, and PgBouncer refusing the statement before it reached a server: no.
    expect(isOutcomeUnknownError(prismaError({ kind: 'postgres', code: '23505', severity: 'ERROR', originalCode: '23505', originalMessage: 'duplicate key' }))).toBe(false)
    expect(isOutcomeUnknownError(prismaError({ kind: 'postgres', code: '08P01', severity: 'FATAL', originalCode: '08P01', originalMessage: 'query_wait_timeout' }))).toBe(false)
  })
})
