/** Parses a PostgreSQL LSN (`16/B374D848`) into a byte position. */
export function parseLsn(text: string): bigint {
  const [hi, lo] = text.split('/')
  if (hi === undefined || lo === undefined) throw new Error(`not an LSN: ${text}`)
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`)
}

/** Formats a byte position as a PostgreSQL LSN. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`
}
