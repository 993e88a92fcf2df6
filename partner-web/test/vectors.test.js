// The browser encoder against the shared vectors (tests/vectors/normalisation.json), which
// the Python suite checks against linkage/ too: any drift between the two fails CI.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import {
  normaliseName, nameVariants, nicknameRoot, normaliseNhsNumber, normaliseUkPostcode,
  ukPostcodeVariants, normaliseSex, normaliseGeneric, normaliseGenericPostcode, idVariants
} from '../src/normalise.js'
import { readDate, dateVariants, parseIsoDate, iso } from '../src/dates.js'
import { Encoder, resolveColumns } from '../src/encode.js'
import { toHex } from '../src/tokens.js'

const vectors = JSON.parse(readFileSync(new URL('../../tests/vectors/normalisation.json', import.meta.url), 'utf8'))
const cases = vectors.cases

function fromHex (hex) { return Uint8Array.from(hex.match(/../g).map((h) => parseInt(h, 16))) }

test('names: normalised form, every variant and the nickname root', () => {
  for (const c of cases.names) {
    const n = normaliseName(c.raw)
    assert.equal(n, c.normalised, `name ${JSON.stringify(c.raw)}`)
    assert.deepEqual(nameVariants(n), c.variants, `variants of ${JSON.stringify(c.raw)}`)
    if (n) assert.equal(nicknameRoot(n), c.nickname_root)
  }
})

test('NHS numbers, postcodes, sex, generic values and ids', () => {
  for (const c of cases.nhs_numbers) assert.equal(normaliseNhsNumber(c.raw), c.normalised, c.raw)
  for (const c of cases.uk_postcodes) assert.deepEqual(ukPostcodeVariants(normaliseUkPostcode(c.raw)), c.variants, c.raw)
  for (const c of cases.sexes) assert.equal(normaliseSex(c.raw), c.normalised, c.raw)
  for (const c of cases.generic) {
    assert.equal(normaliseGeneric(c.raw), c.normalised, c.raw)
    assert.equal(normaliseGenericPostcode(c.raw), c.postcode, c.raw)
  }
  for (const c of cases.ids) assert.deepEqual(idVariants(normaliseGeneric(c.raw)), c.variants, c.raw)
})

test('dates: every format, status and variant', () => {
  const reference = parseIsoDate(cases.reference_date)
  for (const c of cases.dates) {
    const [parsed, status] = readDate(c.raw, reference, c.formats)
    const where = `${JSON.stringify(c.raw)} under ${JSON.stringify(c.formats)}`
    assert.equal(parsed ? iso(parsed) : null, c.iso, where)
    assert.equal(status, c.status, where)
    assert.deepEqual(dateVariants(parsed), c.variants, where)
  }
})

test('whole extracts: every token and attribute of every row, and the rejects', async () => {
  const key = fromHex(vectors.test_key_hex)
  for (const table of vectors.tables) {
    const header = Object.keys(table.input[0])
    const columns = resolveColumns(table.kit, header)
    const encoder = new Encoder(table.kit, key, columns)
    const result = await encoder.encode(table.input)
    assert.deepEqual(result.rejects, table.rejects, `rejects of ${table.spec.name}`)
    assert.equal(result.rows, table.output.length)
    for (let r = 0; r < table.output.length; r++) {
      const expected = table.output[r]
      assert.equal(result.rowRefs[r], expected.row_ref)
      for (const c of table.kit.columns) {
        let got = result.columns[c.name][r]
        if (got instanceof Uint8Array) got = toHex(got)
        assert.equal(got, expected[c.name], `${table.spec.name} row ${expected.row_ref} ${c.name}`)
      }
    }
  }
})
