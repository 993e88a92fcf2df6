// Normalisation of identifiers, the same as linkage/normalise/*.py. Any difference is a
// bug: both implementations are checked against tests/vectors/normalisation.json.

import { NICKNAMES } from './nicknames.js'

export const TITLES = new Set(['MR', 'MRS', 'MS', 'MISS', 'MX', 'DR', 'PROF', 'REV', 'REVD',
  'SIR', 'DAME', 'LORD', 'LADY', 'FR', 'SR', 'MASTER', 'CAPT'])

// letters that NFKD does not decompose into ASCII
const SPECIAL = { 'ß': 'SS', 'Æ': 'AE', 'æ': 'AE', 'Ø': 'O', 'ø': 'O', 'Ł': 'L', 'ł': 'L',
  'Đ': 'D', 'đ': 'D', 'Þ': 'TH', 'þ': 'TH', 'Œ': 'OE', 'œ': 'OE', 'ı': 'I' }
const SPECIAL_RE = /[ßÆæØøŁłĐđÞþŒœı]/g
const APOSTROPHES = /['’‘`´]/g
const NON_LETTERS = /[^A-Z]+/g
const COMBINING = /\p{M}/gu

/** Python's str.upper() differs from toUpperCase() on a few letters; none survive _fold. */
function fold (text) {
  return text.replace(SPECIAL_RE, (ch) => SPECIAL[ch]).normalize('NFKD').replace(COMBINING, '')
}

/** Canonical name: ASCII upper case, single spaces, leading titles dropped while a word remains. */
export function normaliseName (raw) {
  if (raw == null) return null
  const text = fold(raw).toUpperCase().replace(APOSTROPHES, '')
  const words = text.replace(NON_LETTERS, ' ').split(' ').filter(Boolean)
  let start = 0
  while (start < words.length - 1 && TITLES.has(words[start])) start++
  const out = words.slice(start).join(' ')
  return out || null
}

export function nameParts (name) {
  const parts = name.split(' ')
  if (parts.length === 1) return [name, null]
  return [parts[0], parts[parts.length - 1]]
}

export function nicknameRoot (name) {
  const first = name.split(' ')[0]
  return NICKNAMES[first] ?? first
}

const SOUNDEX = [['BFPV', '1'], ['CGJKQSXZ', '2'], ['DT', '3'], ['L', '4'], ['MN', '5'], ['R', '6']]
function soundexCode (letter) {
  for (const [set, code] of SOUNDEX) if (set.includes(letter)) return code
  return null
}

/** American Soundex exactly as jellyfish computes it. */
export function soundex (s) {
  if (!s) return ''
  s = s.normalize('NFKD').toUpperCase()
  const result = [s[0]]
  let count = 1
  let last = soundexCode(s[0])
  for (const letter of s.slice(1)) {
    const code = soundexCode(letter)
    if (code !== null) {
      if (code !== last) { result.push(code); count++ }
      last = code
    } else if (letter !== 'H' && letter !== 'W') {
      last = null
    }
    if (count === 4) break
  }
  return result.join('') + '0'.repeat(4 - count)
}

const NAME_VARIANTS = ['exact', 'nickname', 'phonetic', 'prefix3', 'initial', 'part1', 'part2']

/** Every derived variant of a normalised name. */
export function nameVariants (name) {
  if (!name) return Object.fromEntries(NAME_VARIANTS.map((v) => [v, null]))
  const compact = name.replaceAll(' ', '')
  const [part1, part2] = nameParts(name)
  return {
    exact: compact,
    nickname: nicknameRoot(name),
    phonetic: soundex(compact),
    prefix3: compact.slice(0, 3),
    initial: compact[0],
    part1,
    part2
  }
}

// NHS numbers: ten digits, modulus 11
const NHS_SEPARATORS = /[\s\-./]/g
export function nhsCheckDigitOk (digits) {
  if (!/^[0-9]{10}$/.test(digits)) return false
  let total = 0
  for (let i = 0; i < 9; i++) total += (digits.charCodeAt(i) - 48) * (10 - i)
  const check = (11 - (total % 11)) % 11
  return check !== 10 && check === digits.charCodeAt(9) - 48
}
export function normaliseNhsNumber (raw) {
  if (raw == null) return null
  const digits = raw.replace(NHS_SEPARATORS, '')
  if (!nhsCheckDigitOk(digits)) return null
  if (new Set(digits).size === 1) return null
  return digits
}

// UK postcodes (BS 7666 pattern plus GIR 0AA)
const UK = /^(GIR0AA|(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?|[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])[0-9][ABD-HJLNP-UW-Z]{2})$/
export function normaliseUkPostcode (raw) {
  if (raw == null) return null
  const compact = raw.replace(/[^A-Za-z0-9]/g, '').toUpperCase()
  if (compact.length < 5 || compact.length > 7 || !UK.test(compact)) return null
  return `${compact.slice(0, -3)} ${compact.slice(-3)}`
}
export function ukPostcodeVariants (postcode) {
  if (postcode == null) return { full: null, sector: null, district: null }
  const [outward, inward] = postcode.split(' ')
  return { full: postcode, sector: `${outward} ${inward[0]}`, district: outward }
}

// sex codes
const SEX = { M: 'M', MALE: 'M', MAN: 'M', 1: 'M', BOY: 'M', F: 'F', FEMALE: 'F', WOMAN: 'F',
  2: 'F', GIRL: 'F', W: 'F', X: 'X', I: 'X', INDETERMINATE: 'X' }
export function normaliseSex (raw) {
  if (raw == null) return null
  const key = raw.trim().toUpperCase().replaceAll('.', '').split(/\s+/).filter(Boolean).join(' ')
  return SEX[key] ?? null
}

// generic strings, ids, non-UK postcodes
export function normaliseGeneric (raw) {
  if (raw == null) return null
  const folded = raw.toUpperCase().normalize('NFKD').replace(COMBINING, '')
  const text = folded.replace(/[^0-9A-Z]+/g, ' ').split(' ').filter(Boolean).join(' ')
  return text || null
}
export function normaliseGenericPostcode (raw) {
  const text = normaliseGeneric(raw)
  return text ? text.replaceAll(' ', '') : null
}

/** An id's typo-tolerant variants (each third masked in turn; characters sorted). */
export function idVariants (value) {
  if (value == null || value.length < 4) {
    return { exact: value, mask1: null, mask2: null, mask3: null, sorted: null }
  }
  const n = value.length
  const cuts = [0, pyRound(n / 3), pyRound(2 * n / 3), n]
  const out = { exact: value }
  for (let i = 0; i < 3; i++) {
    out[`mask${i + 1}`] = value.slice(0, cuts[i]) + '*'.repeat(cuts[i + 1] - cuts[i]) + value.slice(cuts[i + 1])
  }
  out.sorted = [...value].sort().join('')
  return out
}

/** Python's round(): halves to even. */
export function pyRound (x) {
  const f = Math.floor(x)
  const diff = x - f
  if (diff > 0.5) return f + 1
  if (diff < 0.5) return f
  return f % 2 === 0 ? f : f + 1
}
