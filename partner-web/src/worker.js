// The page's Web Worker: all reading, checking, hashing and sealing happens here, in
// batches, so the page stays responsive and memory stays bounded. Plaintext never leaves
// this worker; what it posts back is the check report (counts and row numbers, no values)
// and the sealed payload.
import { readSheet } from 'read-excel-file/web-worker'
import { checkExtract, sealExtract, csvBatches, sheetBatches } from './extract.js'

async function batchesOf (file, options) {
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer())
  if (head[0] === 0x50 && head[1] === 0x4b) {
    const sheet = await readSheet(file, options.sheet || undefined)
    if (!sheet.length) throw new Error(`${file.name}: the sheet is empty`)
    return () => sheetBatches(sheet)
  }
  if (head[0] === 0xd0 && head[1] === 0xcf) throw new Error(`${file.name}: an old .xls workbook: save it as .xlsx or CSV from Excel`)
  return () => csvBatches(() => file.stream(), options)
}

self.onmessage = async ({ data }) => {
  const progress = (p) => self.postMessage({ type: 'progress', ...p, total: data.file.size })
  try {
    const open = await batchesOf(data.file, data.read ?? {})
    if (data.cmd === 'check') {
      const check = await checkExtract(data.kit, open(), data.mapping ?? {}, progress)
      self.postMessage({ type: 'checked', check })
    } else if (data.cmd === 'seal') {
      const parts = []
      const sealed = await sealExtract({ ...data, batches: open(), emit: (bytes) => parts.push(bytes), onProgress: progress })
      const blob = new Blob(parts, { type: 'application/vnd.pprl.sealed' })
      self.postMessage({ type: 'sealed', blob, header: sealed.header, envelope: sealed.envelope, via: sealed.via })
    }
  } catch (err) {
    // messages name files, rows and columns, never values
    self.postMessage({ type: 'error', message: `${data.file.name}: ${err.message}` })
  }
}
