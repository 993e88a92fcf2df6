// Reading a partner's CSV the way linkage/encode/readers.py does: UTF-8 (with or without a
// BOM) or Windows-1252 (detected), the delimiter sniffed from the first lines, quoted
// fields (RFC 4180), streamed in chunks so memory stays bounded.

export const DELIMITERS = { comma: ',', semicolon: ';', tab: '\t', pipe: '|' }

/** 'utf8' unless the bytes say otherwise (a BOM, or a sequence UTF-8 forbids). */
export function detectEncoding (sample, complete) {
  if (sample[0] === 0xef && sample[1] === 0xbb && sample[2] === 0xbf) return 'utf8'
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(sample, { stream: !complete })
    return 'utf8'
  } catch {
    return 'cp1252'
  }
}

function splitLine (line, delimiter) {
  return new CsvParser(delimiter).feed(line + '\n')[0] ?? []
}

/** The delimiter that splits the header and the next lines into the same count. */
export function sniffDelimiter (text) {
  const lines = text.split(/\r\n|\n|\r/).slice(0, 20).filter((l) => l.trim())
  if (!lines.length) return ','
  const sample = lines.length > 1 ? lines.slice(0, -1) : lines
  let best = ','; let bestScore = [0, 0]
  for (const char of Object.values(DELIMITERS)) {
    const counts = sample.map((l) => splitLine(l, char).length)
    const header = counts[0]
    if (header < 2) continue
    const consistent = counts.filter((c) => c === header).length
    if (consistent > bestScore[0] || (consistent === bestScore[0] && header > bestScore[1])) {
      best = char; bestScore = [consistent, header]
    }
  }
  return best
}

/** An incremental RFC 4180 parser: feed() text, get back the records it completed. */
export class CsvParser {
  constructor (delimiter) {
    this.d = delimiter
    this.field = ''
    this.record = []
    this.quoted = false
    this.afterQuote = false
    this.pendingCR = false
  }

  feed (text) {
    const out = []
    const d = this.d
    for (let i = 0; i < text.length; i++) {
      const ch = text[i]
      if (this.pendingCR) { this.pendingCR = false; if (ch === '\n') continue }
      if (this.quoted) {
        if (ch === '"') {
          if (text[i + 1] === '"') { this.field += '"'; i++ } else if (i + 1 === text.length) { this.quoted = false; this.afterQuote = true; this.maybeEscape = true } else { this.quoted = false; this.afterQuote = true }
        } else this.field += ch
        continue
      }
      if (this.maybeEscape) { this.maybeEscape = false; if (ch === '"') { this.field += '"'; this.quoted = true; this.afterQuote = false; continue } }
      if (ch === d) { this.record.push(this.field); this.field = ''; this.afterQuote = false } else if (ch === '\n' || ch === '\r') {
        this.record.push(this.field); out.push(this.record); this.record = []; this.field = ''; this.afterQuote = false
        if (ch === '\r') this.pendingCR = true
      } else if (ch === '"' && this.field === '' && !this.afterQuote) this.quoted = true
      else this.field += ch
    }
    return out
  }

  end () {
    if (this.field !== '' || this.record.length) {
      this.record.push(this.field)
      const r = this.record
      this.record = []; this.field = ''
      return [r]
    }
    return []
  }
}
