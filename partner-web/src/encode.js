// Encode a partner's rows under a partner kit (linkage/encode/kit.py) and the secret:
// normalise, derive variants, HMAC-SHA256 tokens, clear attributes. The same rules as
// linkage/encode/table.py; checked against tests/vectors/normalisation.json.

import {
  normaliseName, nameVariants, normaliseNhsNumber, normaliseUkPostcode, ukPostcodeVariants,
  normaliseSex, normaliseGeneric, normaliseGenericPostcode, idVariants
} from './normalise.js'
import { readDate, dateVariants, parseIsoDate, cmp } from './dates.js'
import { TokenMaker } from './tokens.js'

export const REJECT_NO_IDENTIFIER = 'no usable identifier: every identifier is empty or invalid'
export const REJECT_BLANK = 'blank row'
export const REJECT_TOTAL = 'total row: no identifier, only figures'
const WHOLE_NUMBER = /^\s*\+?(\d+)(?:\.0*)?\s*$/
const TOTAL_LABEL = /^\s*(?:grand\s+|sub\s*)?totals?\s*:?\s*$/i

/** How headers are compared: lower case, letters and digits only. */
export function headerKey (name) {
  return name.toLowerCase().replace(/[^0-9a-z]+/g, '')
}

/** Field -> header it is read from, or throws one sentence naming what is missing. */
export function resolveColumns (kit, header, mapping = {}) {
  const fields = {}
  for (const i of kit.identifiers) fields[i.name] = i.headers
  for (const a of kit.attributes) if (a.headers) fields[a.name] = a.headers
  const byKey = {}
  for (const col of header) if (col) (byKey[headerKey(col)] ??= []).push(col)
  const resolved = {}
  const missing = []
  for (const [name, candidates] of Object.entries(fields)) {
    const wanted = mapping[name] ? [mapping[name]] : candidates
    let found = null
    for (const candidate of wanted) {
      const hits = byKey[headerKey(candidate)] ?? []
      if (hits.length > 1) {
        throw new Error(`row 1: columns ${hits.map((h) => `'${h}'`).join(', ')} both match ${name}; rename one, or map it`)
      }
      if (hits.length) { found = hits[0]; break }
    }
    if (found === null) missing.push([name, wanted])
    else resolved[name] = found
  }
  if (missing.length) {
    const listed = missing.map(([n, w]) => `${n} (looked for ${[...new Set(w)].map((x) => `'${x}'`).join(', ')})`).join('; ')
    throw new Error(`row 1: no column for ${listed}; columns found: ${header.slice(0, 30).map((c) => `'${c}'`).join(', ')}. Map it in the column mapping`)
  }
  return resolved
}

function categoryKey (value) {
  return value.trim().toLowerCase().replaceAll('_', ' ').replaceAll('-', ' ').split(/\s+/).filter(Boolean).join(' ')
}

function identifierVariants (ident, raw, reference) {
  // returns {valid, variants, extra, swapped}
  switch (ident.type) {
    case 'nhs_number': {
      const exact = normaliseNhsNumber(raw)
      return { valid: exact !== null, variants: { exact }, extra: null }
    }
    case 'forename': case 'surname': {
      const name = normaliseName(raw)
      const v = nameVariants(name)
      v.swap = v.exact
      return { valid: v.exact !== null, variants: v, extra: name }
    }
    case 'date': {
      const [parsed, status] = readDate(raw, reference, ident.formats)
      return { valid: parsed !== null, variants: dateVariants(parsed), extra: parsed, swapped: status === 'swapped' }
    }
    case 'uk_postcode': {
      const v = ukPostcodeVariants(normaliseUkPostcode(raw))
      return { valid: v.full !== null, variants: v, extra: v.district, sector: v.sector }
    }
    case 'postcode': {
      const code = normaliseGenericPostcode(raw)
      const prefix3 = code ? code.slice(0, 3) : null
      return { valid: code !== null, variants: { full: code, prefix3 }, extra: prefix3 }
    }
    case 'sex': {
      const exact = normaliseSex(raw)
      return { valid: exact !== null, variants: { exact }, extra: null }
    }
    case 'id': {
      const exact = normaliseGeneric(raw)
      const v = ident.variants.length > 1 ? idVariants(exact) : { exact }
      return { valid: exact !== null, variants: v, extra: null }
    }
    default: { // string
      const exact = normaliseGeneric(raw)
      return { valid: exact !== null, variants: { exact }, extra: null }
    }
  }
}

function ageBand (born, ref, attr) {
  if (born == null) return null
  const age = ref.y - born.y - ((ref.m < born.m || (ref.m === born.m && ref.d < born.d)) ? 1 : 0)
  let position = -1
  for (let i = 0; i < attr.bands.length; i++) if (attr.bands[i] <= age) position = i
  return attr.labels[Math.max(position, 0)]
}

/** An encoder for one kit and key; encode() takes batches of rows (objects keyed by header). */
export class Encoder {
  constructor (kit, key, columns, { tokens = true } = {}) {
    this.tokens = tokens
    if (kit.format !== 'pprl-kit/1') throw new Error('the project spec is not a pprl partner kit (pprl-kit/1)')
    if (kit.bloom) throw new Error('this spec uses Bloom-filter encodings, which the browser page does not make: use `pprl hash`')
    this.kit = kit
    this.columns = columns // field -> header
    this.reference = parseIsoDate(kit.reference_date)
    this.makers = new Map()
    this.memo = new Map()
    this.key = key
    this.stats = { rows: 0, invalid: {}, present: {}, swapped: {}, invalidRows: {} }
    for (const i of kit.identifiers) {
      this.stats.invalid[i.name] = 0; this.stats.present[i.name] = 0; this.stats.invalidRows[i.name] = []
      if (i.type === 'date') this.stats.swapped[i.name] = 0
    }
    for (const a of kit.attributes) if (a.headers) this.stats.invalid[a.name] = 0
  }

  /** identifierVariants, memoised per identifier: most values repeat (names, dates, sexes). */
  normalised (ident, raw) {
    let memo = this.memo.get(ident.name)
    if (!memo) { memo = new Map(); this.memo.set(ident.name, memo) }
    let res = memo.get(raw)
    if (res === undefined) {
      if (memo.size > 100000) memo.clear()
      res = identifierVariants(ident, raw, this.reference)
      memo.set(raw, res)
    }
    return res
  }

  maker (domain) {
    const id = domain.join('\0')
    if (!this.makers.has(id)) this.makers.set(id, new TokenMaker(this.key, domain[0], domain[1], this.kit.token_bytes))
    return this.makers.get(id)
  }

  /**
   * Encode rows; rowOffset = data rows before this batch. Returns {columns: name -> array,
   * rows: n kept, rejects: [[dataRow, reason]]}.
   */
  async encode (rows, rowOffset = 0) {
    const kit = this.kit
    const n = rows.length
    const out = {}
    for (const c of kit.columns) out[c.name] = []
    const keep = []
    const rejects = []
    for (let r = 0; r < n; r++) {
      const row = rows[r]
      let usable = false; let anyIdentifier = false; let total = false; let figures = false
      const extras = {}
      const tokens = {}
      for (const ident of kit.identifiers) {
        let raw = row[this.columns[ident.name]]
        if (raw != null && raw.trim() === '') raw = null
        const res = this.normalised(ident, raw)
        extras[ident.name] = res.extra
        if (res.sector !== undefined) extras[ident.name + '\u0000sector'] = res.sector
        if (raw != null) {
          anyIdentifier = true
          this.stats.present[ident.name]++
          if (TOTAL_LABEL.test(raw)) total = true
        }
        if (!res.valid) {
          if (raw != null) {
            this.stats.invalid[ident.name]++
            if (this.stats.invalidRows[ident.name].length < 5) this.stats.invalidRows[ident.name].push(rowOffset + r + 1)
          }
        } else if (ident.type !== 'sex') usable = true
        if (res.swapped) this.stats.swapped[ident.name]++
        tokens[ident.name] = res.variants
      }
      const attrs = {}
      for (const a of kit.attributes) {
        if (a.kind === 'age_band') attrs[a.column] = ageBand(extras[a.source], this.reference, a)
        else if (a.kind === 'area') attrs[a.column] = extras[a.source + (a.level === 'sector' ? '\u0000sector' : '')] ?? null
        else {
          const raw = row[this.columns[a.name]]
          const blank = raw == null || raw.trim() === ''
          if (!blank) figures = true
          let value = null
          if (!blank && a.kind === 'category') {
            const key = categoryKey(raw)
            value = a.values.find((v) => categoryKey(v) === key) ?? null
          } else if (!blank) {
            const m = WHOLE_NUMBER.exec(raw)
            if (m) { const number = Number(m[1]); value = number <= a.max_value ? number : null }
          }
          if (value === null && raw != null) this.stats.invalid[a.name]++
          attrs[a.column] = value
        }
      }
      usable = usable && !total
      if (!usable) {
        let reason = REJECT_NO_IDENTIFIER
        if (total || (!anyIdentifier && figures)) reason = REJECT_TOTAL
        else if (!anyIdentifier) reason = REJECT_BLANK
        rejects.push([rowOffset + r + 1, reason])
        continue
      }
      keep.push(rowOffset + r + 1)
      const index = out[kit.columns[0].name].length
      for (const c of kit.columns) {
        if (c.kind === 'token') {
          const value = tokens[c.identifier][c.variant] ?? null
          out[c.name].push(null)
          if (value !== null && this.tokens) out[c.name][index] = this.maker(c.domain).token(value)
        } else {
          out[c.name].push(attrs[c.name] ?? null)
        }
      }
    }
    this.stats.rows += n
    return { columns: out, rows: keep.length, rowRefs: keep, rejects }
  }
}
