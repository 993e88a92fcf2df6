// Builds the partner page into service/partner/static/: partner.js (the page),
// partner-worker.js (the Web Worker) and partner-standalone.html (one self-contained file
// a partner can check by its sha256 and open from disk). Run by `make web`.
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import './gen-nicknames.mjs'

const out = new URL('../service/partner/static/', import.meta.url)
mkdirSync(out, { recursive: true })
const common = { bundle: true, minify: true, format: 'iife', target: 'es2022', write: false, legalComments: 'none' }
const [page, worker] = await Promise.all([
  build({ ...common, entryPoints: [new URL('./src/page.js', import.meta.url).pathname] }),
  build({ ...common, entryPoints: [new URL('./src/worker.js', import.meta.url).pathname] })
])
const pageJs = page.outputFiles[0].text
const workerJs = worker.outputFiles[0].text
writeFileSync(new URL('partner.js', out), pageJs)
writeFileSync(new URL('partner-worker.js', out), workerJs)

// the standalone page: the worker travels as a JSON string and starts from a Blob URL
const css = readFileSync(new URL('./src/page.css', import.meta.url), 'utf8')
const body = readFileSync(new URL('./src/page.html', import.meta.url), 'utf8')
const inline = `window.PPRL_WORKER_SOURCE=${JSON.stringify(workerJs)};\n${pageJs}`
const sha = (text) => createHash('sha256').update(text).digest('base64')
const csp = `default-src 'none'; script-src 'sha256-${sha(inline)}'; style-src 'sha256-${sha(css)}'; worker-src blob:; connect-src https: http://127.0.0.1:* http://localhost:*; img-src data:`
const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<title>pprl: hash and seal your extract</title><style>${css}</style></head>
<body data-standalone="1">${body}<script>${inline}</script></body></html>
`
writeFileSync(new URL('partner-standalone.html', out), html)
writeFileSync(new URL('partner-page.html', out), body)
writeFileSync(new URL('partner.css', out), css)
console.error(`partner page built: page ${pageJs.length} B, worker ${workerJs.length} B, standalone ${html.length} B, sha256 ${createHash('sha256').update(html).digest('hex')}`)
