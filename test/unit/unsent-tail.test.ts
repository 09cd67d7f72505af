import { describe, expect, it } from 'vitest'
import { unsentTail } from '../support/ha-scenario.js'
import type { LedgerEntry } from '../support/ledger-writer.js'

const CRASHED = 5432
const ack = (id: number, issuedAt: number, endedAt: number, port = CRASHED): LedgerEntry => ({ id, issuedAt, endedAt, outcome: 'acked', port, error: null }) as LedgerEntry

describe('unsentTail: which lost writes asynchronous replication can explain', () => {
  const acked = [ack(1, 0, 2), ack(2, 1, 3), ack(3, 4, 6), ack(4, 5, 7), ack(5, 8, 9, 6543)]

  it("the crashed primary's writes acknowledged after every survivor was issued", () => {
    // 1 and 2 survived (the later issued at 1); 3 and 4 ended after that: an unsent tail.
    expect([...unsentTail({ acked }, [3, 4], CRASHED)]).toEqual([3, 4])
    // Overlapping writes: 4 survived (issued at 5) while 3 (ended at 6) was lost — 3's commit may follow 4's.
    expect([...unsentTail({ acked }, [3], CRASHED)]).toEqual([3])
  })

  it('not a write lost from the middle of the WAL, nor one another node acknowledged', () => {
    // 1 ended at 2, before survivors 3 and 4 were issued: a hole in the prefix, not lag.
    expect([...unsentTail({ acked }, [1], CRASHED)]).toEqual([])
    expect([...unsentTail({ acked }, [1, 4], CRASHED)]).toEqual([4])
    expect([...unsentTail({ acked }, [5], CRASHED)]).toEqual([])
  })
})
