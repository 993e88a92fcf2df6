import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CsvParser, sniffDelimiter, detectEncoding } from '../src/csv.js'

function parseAll (text, d, step) {
  const p = new CsvParser(d)
  const out = []
  for (let i = 0; i < text.length; i += step) out.push(...p.feed(text.slice(i, i + step)))
  return out.concat(p.end())
}

test('quoted fields, doubled quotes, CRLF and chunk boundaries anywhere', () => {
  const text = 'a,b,c\r\n"x, y","say ""hi""",3\r\n"multi\nline",,\n'
  for (const step of [1, 2, 3, 5, 1000]) {
    assert.deepEqual(parseAll(text, ',', step), [['a', 'b', 'c'], ['x, y', 'say "hi"', '3'], ['multi\nline', '', '']], `step ${step}`)
  }
})

test('delimiters are sniffed; encodings detected', () => {
  assert.equal(sniffDelimiter('a;b;c\n1;2;3\n'), ';')
  assert.equal(sniffDelimiter('a\tb\n1\t2\n'), '\t')
  assert.equal(sniffDelimiter('a,b\n"1;2",3\n'), ',')
  assert.equal(detectEncoding(new Uint8Array([0x41, 0xe9, 0x42]), true), 'cp1252')
  assert.equal(detectEncoding(new TextEncoder().encode('Zoë'), true), 'utf8')
})
