// Dates of birth, the same as linkage/normalise/dates.py (checked by the shared vectors).
// Dates are plain {y, m, d} objects: no time zones anywhere.

const ISO = /^(\d{4})-(\d{1,2})-(\d{1,2})$/
const COMPACT = /^(\d{4})(\d{2})(\d{2})$/
const DMY = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})$/
const TIME = /(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[AaPp][Mm])?(?:Z|[+-]\d{2}:?\d{2})?)$/
const SERIAL = /^(\d{5})(?:\.0*)?$/
const DAY_NAME_YEAR = /^(\d{1,2})(?:st|nd|rd|th)?[\s\-/.]*([A-Za-z]{3,9})\.?[\s\-/.,]*(\d{4}|\d{2})$/
const NAME_DAY_YEAR = /^([A-Za-z]{3,9})\.?[\s\-/.]*(\d{1,2})(?:st|nd|rd|th)?,?[\s\-/.]*(\d{4})$/
const MONTH_NAMES = [['jan', 'january'], ['feb', 'february'], ['mar', 'march'], ['apr', 'april'],
  ['may'], ['jun', 'june'], ['jul', 'july'], ['aug', 'august'], ['sep', 'sept', 'september'],
  ['oct', 'october'], ['nov', 'november'], ['dec', 'december']]
const MONTHS = {}
MONTH_NAMES.forEach((names, i) => { for (const n of names) MONTHS[n] = i + 1 })
const EARLIEST = { y: 1900, m: 1, d: 1 }

function daysIn (y, m) {
  return [31, (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
}
export function makeDate (y, m, d) {
  if (!(y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, m))) return null
  return { y, m, d }
}
export function cmp (a, b) { return (a.y - b.y) || (a.m - b.m) || (a.d - b.d) }
const pad = (n, w) => String(n).padStart(w, '0')
export function iso (v) { return `${pad(v.y, 4)}-${pad(v.m, 2)}-${pad(v.d, 2)}` }
export function parseIsoDate (text) {
  const m = ISO.exec(text)
  return m ? makeDate(+m[1], +m[2], +m[3]) : null
}

function pivot (yearText, month, day, reference) {
  let year = 2000 + Number(yearText)
  const candidate = makeDate(year, month, day)
  if (candidate === null || cmp(candidate, reference) > 0) year -= 100
  return year
}
function ymdOrSwap (y, m, d) {
  const parsed = makeDate(y, m, d)
  if (parsed !== null) return [parsed, false]
  const swapped = makeDate(y, d, m)
  return [swapped, swapped !== null]
}
function monthName (text, reference) {
  let dayText, monthText, yearText, m
  if ((m = DAY_NAME_YEAR.exec(text))) [dayText, monthText, yearText] = [m[1], m[2], m[3]]
  else if ((m = NAME_DAY_YEAR.exec(text))) [monthText, dayText, yearText] = [m[1], m[2], m[3]]
  else return null
  const month = MONTHS[monthText.toLowerCase()]
  if (month === undefined) return null
  const day = Number(dayText)
  const year = yearText.length === 2 ? pivot(yearText, month, day, reference) : Number(yearText)
  return makeDate(year, month, day)
}

// strptime, for the directives a date-of-birth format uses
const ABBR = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
const FULL = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august',
  'september', 'october', 'november', 'december']
const DIRECTIVES = {
  d: ['(\\d{1,2})', 'd'], m: ['(\\d{1,2})', 'm'], Y: ['(\\d{4})', 'Y'], y: ['(\\d{2})', 'y'],
  b: ['([A-Za-z]{3})', 'b'], B: ['([A-Za-z]+)', 'B'], H: ['(\\d{1,2})', 'H'], M: ['(\\d{1,2})', 'M'],
  S: ['(\\d{1,2})', 'S']
}
const compiled = new Map()
function compile (fmt) {
  if (compiled.has(fmt)) return compiled.get(fmt)
  let pattern = ''
  const groups = []
  for (let i = 0; i < fmt.length; i++) {
    const ch = fmt[i]
    if (ch === '%' && i + 1 < fmt.length) {
      const dir = fmt[++i]
      if (dir === '%') { pattern += '%'; continue }
      const spec = DIRECTIVES[dir]
      if (!spec) throw new Error(`unsupported date directive %${dir}`)
      pattern += spec[0]
      groups.push(spec[1])
    } else if (/\s/.test(ch)) {
      pattern += '\\s+'
    } else {
      pattern += ch.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')
    }
  }
  const out = [new RegExp(`^${pattern}$`, 'i'), groups]
  compiled.set(fmt, out)
  return out
}
function strptime (text, fmt) {
  const [re, groups] = compile(fmt)
  const m = re.exec(text)
  if (!m) return null
  let y = 1900; let mo = 1; let d = 1
  for (let i = 0; i < groups.length; i++) {
    const v = m[i + 1]
    switch (groups[i]) {
      case 'd': d = +v; break
      case 'm': mo = +v; break
      case 'Y': y = +v; break
      case 'y': y = +v < 69 ? 2000 + +v : 1900 + +v; break
      case 'b': { const k = ABBR.indexOf(v.toLowerCase()); if (k < 0) return null; mo = k + 1; break }
      case 'B': { const k = FULL.indexOf(v.toLowerCase()); if (k < 0) return null; mo = k + 1; break }
      case 'H': if (+v > 23) return null; break
      case 'M': case 'S': if (+v > 59) return null; break
    }
  }
  return makeDate(y, mo, d)
}
function declared (text, formats, reference) {
  for (const swap of [false, true]) {
    for (let fmt of formats) {
      if (swap) {
        if (!fmt.includes('%d') || !fmt.includes('%m')) continue
        fmt = fmt.replaceAll('%d', '\0').replaceAll('%m', '%d').replaceAll('\0', '%m')
      }
      let parsed = strptime(text, fmt)
      if (parsed === null) continue
      if (fmt.includes('%y')) {
        const year = pivot(pad(parsed.y % 100, 2), parsed.m, parsed.d, reference)
        parsed = makeDate(year, parsed.m, parsed.d) ?? parsed
      }
      return [parsed, swap]
    }
  }
  return [null, false]
}
function byDefault (text, reference) {
  let m
  if ((m = ISO.exec(text)) || (m = COMPACT.exec(text))) return ymdOrSwap(+m[1], +m[2], +m[3])
  if ((m = DMY.exec(text))) {
    const day = +m[1]; const month = +m[2]; const yearText = m[3]
    if (yearText.length === 2) {
      const parsed = makeDate(pivot(yearText, month, day, reference), month, day)
      if (parsed !== null) return [parsed, false]
      const swapped = makeDate(pivot(yearText, day, month, reference), day, month)
      return [swapped, swapped !== null]
    }
    return ymdOrSwap(+yearText, month, day)
  }
  return [null, false]
}
function addDays (base, days) {
  const t = new Date(Date.UTC(base.y, base.m - 1, base.d) + days * 86400000)
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate() }
}

/** [date or null, status] with status ok | swapped | missing | invalid | out_of_range. */
export function readDate (raw, reference, formats) {
  if (raw == null) return [null, 'missing']
  let text = raw.trim()
  if (!text) return [null, 'missing']
  text = text.replace(TIME, '') || text
  let parsed = null; let swapped = false
  if (formats && formats.length) {
    [parsed, swapped] = declared(text, formats, reference)
    if (parsed === null) parsed = parseIsoDate(text)
  } else {
    [parsed, swapped] = byDefault(text, reference)
  }
  if (parsed === null) {
    const m = SERIAL.exec(text)
    parsed = m ? addDays({ y: 1899, m: 12, d: 30 }, +m[1]) : monthName(text, reference)
  }
  if (parsed === null) return [null, 'invalid']
  if (cmp(parsed, EARLIEST) < 0 || cmp(parsed, reference) > 0) return [null, 'out_of_range']
  return [parsed, swapped ? 'swapped' : 'ok']
}

/** Derived variants of a date: full, swapped, year, month_day, year_month. */
export function dateVariants (v) {
  if (v == null) return { full: null, swapped: null, year: null, month_day: null, year_month: null }
  const sw = v.d <= 12 ? makeDate(v.y, v.d, v.m) : null
  return {
    full: iso(v),
    swapped: sw && cmp(sw, v) !== 0 ? iso(sw) : null,
    year: pad(v.y, 4),
    month_day: `${pad(v.m, 2)}-${pad(v.d, 2)}`,
    year_month: `${pad(v.y, 4)}-${pad(v.m, 2)}`
  }
}
