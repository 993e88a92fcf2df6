// The partner's whole path in one place, for the page's Web Worker and for Node:
// read (CSV or .xlsx) -> check (the quality report) -> encode -> Parquet -> seal -> envelope.
// Two passes over the input: the check pass learns how many rows will be written, which
// the sealed agreement states up front; the second pass hashes and seals in batches, so
// memory holds one batch and one sealed chunk, whatever the file size.

import { ParquetWriter, ByteWriter } from 'hyparquet-writer'
import { CsvParser, detectEncoding, sniffDelimiter } from './csv.js'
import { Encoder, resolveColumns, headerKey } from './encode.js'
import { SealWriter, hex, keyFingerprint } from './seal.js'
import { keyCheckValue } from './tokens.js'
import { sha256 } from '@noble/hashes/sha2.js'

export const TOOL_VERSION = 'pprl-web 0.1.0'
export const BATCH_ROWS = 20000
const FRAME_MAGIC = new TextEncoder().encode('PPRLSUB1')

/** Rows of a CSV byte stream, in batches of objects keyed by header; row numbers are data rows. */
export async function * csvBatches (openStream, { encoding, delimiter } = {}, batchRows = BATCH_ROWS) {
  const reader = openStream().getReader()
  let parser = null; let decoder = null; let header = null; let batch = []
  let head = new Uint8Array(0)
  const flushRecords = function * (records) {
    for (const rec of records) {
      if (header === null) { header = rec.map((h, i) => (i === 0 ? h.replace(/^\uFEFF/, '') : h)); continue }
      if (rec.length === 1 && rec[0] === '' && header.length > 1) { batch.push(null); } else {
        const row = {}
        header.forEach((h, i) => { row[h] = i < rec.length ? rec[i] : null })
        batch.push(row)
      }
      if (batch.length >= batchRows) { yield batch; batch = [] }
    }
  }
  for (;;) {
    const { value, done } = await reader.read()
    if (!parser) {
      // look at the first 64 KiB to choose the encoding and the delimiter
      if (value) head = concatBytes(head, value)
      if (head.length < 65536 && !done) continue
      encoding ??= detectEncoding(head.subarray(0, 65536), done)
      decoder = new TextDecoder(encoding === 'utf8' ? 'utf-8' : 'windows-1252')
      const text = decoder.decode(head, { stream: !done })
      delimiter ??= sniffDelimiter(text.slice(0, 65536).replace(/^\uFEFF/, ''))
      parser = new CsvParser(delimiter)
      yield * flushRecords(parser.feed(text))
    } else if (value) {
      yield * flushRecords(parser.feed(decoder.decode(value, { stream: true })))
    }
    if (done) break
  }
  if (!parser) throw new Error('the file is empty')
  yield * flushRecords(parser.feed(decoder.decode()))
  yield * flushRecords(parser.end())
  if (header === null) throw new Error('the file is empty: no header row')
  if (batch.length) yield batch
}

function concatBytes (a, b) {
  const out = new Uint8Array(a.length + b.length); out.set(a); out.set(b, a.length); return out
}

/** An .xlsx cell as the text a CSV export would hold (readers.py _cell_text). */
export function cellText (value) {
  if (value === null || value === undefined) return null
  if (typeof value === 'string') return value
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE'
  if (value instanceof Date) {
    const iso = value.toISOString()
    return iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso.slice(0, 19)
  }
  if (typeof value === 'number' && Number.isInteger(value)) return String(value)
  return String(value)
}

/** Rows of an already-read sheet (array of arrays, header first) in batches. */
export async function * sheetBatches (sheet, batchRows = BATCH_ROWS) {
  const header = sheet[0].map((h) => cellText(h) ?? '')
  let batch = []
  for (const cells of sheet.slice(1)) {
    const row = {}
    header.forEach((h, i) => { row[h] = cellText(cells[i]) })
    batch.push(row)
    if (batch.length >= batchRows) { yield batch; batch = [] }
  }
  if (batch.length) yield batch
}

/**
 * Pass 1: the quality report. Returns {columns, rowsIn, rowsKept, rejects, fields: [...]}
 * where each field reports present, missing, invalid (with example spreadsheet rows),
 * distinct share, and for dates how many read only with day and month swapped.
 */
export async function checkExtract (kit, batches, mapping = {}, onProgress = () => {}) {
  const key = new Uint8Array(32) // no tokens are made in the check: any key will do
  let encoder = null; let columns = null
  let rowsKept = 0; let rowsIn = 0; const rejects = []
  const distinct = {}
  for await (const raw of batches) {
    const batch = raw.map((r) => r ?? {})
    if (!encoder) {
      const header = Object.keys(raw.find((r) => r !== null) ?? {})
      columns = resolveColumns(kit, header, mapping)
      encoder = new Encoder(kit, key, columns, { tokens: false })
      for (const f of Object.keys(columns)) distinct[f] = new Set()
    }
    const result = await encoder.encode(batch, rowsIn)
    for (const [f, col] of Object.entries(columns)) {
      const s = distinct[f]
      if (s.size < 200000) for (const r of batch) { const v = r[col]; if (v != null && v.trim() !== '') s.add(v) }
    }
    rowsIn += batch.length; rowsKept += result.rows
    for (const r of result.rejects) if (rejects.length < 1000) rejects.push(r)
    onProgress({ stage: 'checking', rows: rowsIn })
  }
  if (!encoder) throw new Error('the file has a header but no data rows')
  const s = encoder.stats
  const fields = Object.keys(columns).map((name) => {
    const ident = kit.identifiers.find((i) => i.name === name)
    const present = ident ? s.present[name] : null
    return {
      field: name,
      column: columns[name],
      type: ident ? ident.type : kit.attributes.find((a) => a.name === name).kind,
      present,
      missing: present === null ? null : rowsIn - present,
      invalid: s.invalid[name] ?? 0,
      invalid_rows: (s.invalidRows[name] ?? []).map((r) => r + 1), // spreadsheet rows: header is row 1
      distinct_share: present ? Math.round(1000 * distinct[name].size / present) / 1000 : null,
      swapped: s.swapped[name] ?? null
    }
  })
  return { columns, rowsIn, rowsKept, rejects: rejects.map(([r, why]) => [r + 1, why]), rejectedCount: rowsIn - rowsKept, fields }
}

function schemaFor (kit) {
  const schema = [{ name: 'root', num_children: kit.columns.length }]
  for (const c of kit.columns) {
    if (c.kind === 'token') schema.push({ name: c.name, type: 'FIXED_LEN_BYTE_ARRAY', type_length: kit.token_bytes, repetition_type: 'OPTIONAL' })
    else if (c.kind === 'int32') schema.push({ name: c.name, type: 'INT32', repetition_type: 'OPTIONAL' })
    else schema.push({ name: c.name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' })
  }
  return schema
}

/** A ByteWriter that hands each flushed row group to an async sink (the sealer). */
class StreamingWriter extends ByteWriter {
  constructor (sink) { super(); this.sink = sink; this.hash = sha256.create() }
  flush () {
    const bytes = new Uint8Array(this.buffer, 0, this.index).slice()
    this.index = 0
    this.hash.update(bytes)
    return this.sink(bytes)
  }

  finish () { return this.flush() }
}

function canonical (obj) {
  return JSON.stringify(Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]])))
}

/**
 * Pass 2: hash, write Parquet, seal. `emit(bytes)` receives the sealed payload in order.
 * Returns {envelope, header} where header is the X-PPRL-Envelope value.
 */
export async function sealExtract ({ kit, secret, columns, batches, check, recipient, projectId, policyFingerprint, emit, onProgress = () => {} }) {
  const kcv = await keyCheckValue(secret)
  const agreement = {
    format: 'pprl-agreement/1',
    key_check_value: kcv,
    policy_fingerprint: policyFingerprint,
    project_id: projectId,
    rows: check.rowsKept,
    rows_rejected: check.rejectedCount,
    spec_fingerprint: kit.spec_fingerprint,
    tool_version: TOOL_VERSION
  }
  const sealer = await SealWriter.create(recipient, emit)
  const body = new TextEncoder().encode(canonical(agreement))
  const frame = new Uint8Array(FRAME_MAGIC.length + 4 + body.length)
  frame.set(FRAME_MAGIC); new DataView(frame.buffer).setUint32(FRAME_MAGIC.length, body.length); frame.set(body, FRAME_MAGIC.length + 4)
  await sealer.write(frame)
  const out = new StreamingWriter((bytes) => sealer.write(bytes))
  const manifest = {
    created_at: new Date().toISOString().slice(0, 19) + '+00:00',
    format: 'pprl-hashed/1',
    key_check_value: kcv,
    rows_rejected: check.rejectedCount,
    rows_written: check.rowsKept,
    spec_fingerprint: kit.spec_fingerprint,
    tool_version: TOOL_VERSION
  }
  const writer = new ParquetWriter({ writer: out, schema: schemaFor(kit), codec: 'SNAPPY', statistics: false,
    kvMetadata: [{ key: 'pprl.manifest', value: canonical(manifest) }], createdBy: TOOL_VERSION })
  const encoder = new Encoder(kit, secret, columns)
  let rowsIn = 0; let written = 0
  for await (const raw of batches) {
    const result = await encoder.encode(raw.map((r) => r ?? {}), rowsIn)
    rowsIn += raw.length
    if (result.rows) {
      written += result.rows
      await writer.write({ columnData: kit.columns.map((c) => ({ name: c.name, data: result.columns[c.name] })), rowGroupSize: result.rows })
    }
    onProgress({ stage: 'hashing and sealing', rows: rowsIn, bytes: sealer.sealedBytes })
  }
  if (written !== check.rowsKept) throw new Error('the file changed between the check and the hashing: choose it again')
  await writer.finish()
  const payloadSha256 = hex(out.hash.digest())
  const { sealedBytes, sealedSha256 } = await sealer.close()
  const envelope = {
    ...agreement,
    enclave_key_fingerprint: keyFingerprint(recipient),
    format: 'pprl-envelope/1',
    payload_sha256: payloadSha256,
    sealed_bytes: sealedBytes,
    sealed_sha256: sealedSha256
  }
  const json = canonical(envelope)
  const header = btoa(json).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')
  return { envelope, header, via: sealer.via }
}

export { headerKey }
