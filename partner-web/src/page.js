// The partner page: gathers the project, the secret and the file, runs the Web Worker,
// shows the quality report and the enclave fingerprint, and uploads the sealed payload.
// Nothing but the sealed payload and its clear envelope (fingerprints and counts) is sent.
import { formatFingerprint, keyFingerprint } from './seal.js'
import { keyCheckValue } from './tokens.js'

const $ = (id) => document.getElementById(id)
const state = { bundle: null, secret: null, check: null }
const standalone = document.body.dataset.standalone === '1' || location.protocol === 'file:'

function serviceUrl () {
  const typed = $('service').value.trim().replace(/\/+$/, '')
  return typed || (standalone ? '' : location.origin)
}

async function api (path, options = {}) {
  const base = serviceUrl()
  if (!base) throw new Error('enter the service address first')
  const response = await fetch(base + path, { ...options, headers: { Authorization: `Bearer ${$('token').value.trim()}`, ...(options.headers ?? {}) } })
  const body = await response.json().catch(() => ({}))
  if (!response.ok) throw new Error(body.detail || body.error || `the service answered ${response.status}`)
  return body
}

function say (id, text, cls = 'note') { const el = $(id); el.textContent = text; el.className = cls }

const scriptSrc = document.currentScript?.src

function runWorker (message) {
  return new Promise((resolve, reject) => {
    const worker = window.PPRL_WORKER_SOURCE
      ? new Worker(URL.createObjectURL(new Blob([window.PPRL_WORKER_SOURCE], { type: 'text/javascript' })))
      : new Worker(new URL('partner-worker.js', scriptSrc ?? `${location.origin}/partner/static/partner.js`))
    worker.onmessage = ({ data }) => {
      if (data.type === 'progress') {
        const mb = (data.bytes ?? 0) / 1e6
        $('progress-text').textContent = `${data.stage}: ${data.rows.toLocaleString()} rows read` + (data.bytes ? `, ${mb.toFixed(1)} MB sealed` : '')
        return
      }
      worker.terminate()
      if (data.type === 'error') reject(new Error(data.message)); else resolve(data)
    }
    worker.onerror = (e) => { worker.terminate(); reject(new Error(e.message || 'the worker failed')) }
    worker.postMessage(message)
  })
}

function normaliseFingerprint (text) { return text.replace(/[\s:]/g, '').toLowerCase().replace(/^sha256/, '') }

function pinned () {
  if (!state.bundle) return false
  const given = normaliseFingerprint($('pinned').value)
  const actual = state.bundle.fingerprint
  if (!given) { say('pin-status', 'Enter the enclave fingerprint your project lead gave you, to check you are sealing to the real enclave.'); return false }
  if (given !== actual) { say('pin-status', 'The enclave fingerprint does NOT match the one you were given: do not upload; tell your project lead.', 'bad'); return false }
  say('pin-status', 'The enclave fingerprint matches the one you were given.', 'ok')
  return true
}

function refresh () {
  $('check').disabled = !(state.bundle && state.secret && $('data').files[0])
  $('submit').disabled = !(state.check && pinned() && state.secret && state.bundle.online)
  $('save-sealed').disabled = !(state.check && pinned() && state.secret)
}

function hexBytes (hex) { return Uint8Array.from(hex.match(/../g).map((h) => parseInt(h, 16))) }

function showBundle () {
  // the fingerprint is computed here from the key the page will seal to: the kit's own
  // claim of it comes from the operator, who must not be able to vouch for a key
  if (!/^[0-9a-f]{64}$/.test(state.bundle.enclave_public_key_hex ?? '')) throw new Error('the kit has no valid enclave public key')
  state.bundle.fingerprint = keyFingerprint(hexBytes(state.bundle.enclave_public_key_hex))
  $('spec-fp').textContent = state.bundle.kit.spec_fingerprint
  $('policy-fp').textContent = state.bundle.policy_fingerprint
  $('enclave-fp').textContent = formatFingerprint(state.bundle.fingerprint)
  $('project-facts').hidden = false
}

$('kit-file').addEventListener('change', async () => {
  state.bundle = null; state.check = null
  const file = $('kit-file').files[0]
  if (file) {
    try {
      const data = JSON.parse(await file.text())
      if (!data.kit || data.kit.format !== 'pprl-kit/1') throw new Error('bad kit')
      state.bundle = { ...data, online: false }
      showBundle()
      say('pin-status', `Kit for project ${data.project_name} loaded from ${file.name}.`)
    } catch { say('pin-status', `${file.name}: not a project kit (save it from /v1/projects/<project>/kit)`, 'bad') }
  }
  refresh()
})

async function readMapping () {
  const file = $('mapping').files[0]
  if (!file) return { columns: {}, read: {} }
  let data
  try { data = JSON.parse(await file.text()) } catch { throw new Error(`${file.name}: not a mapping file (expected the JSON written by --save-mapping)`) }
  if (!data || data.pprl_mapping !== 1 || typeof data.columns !== 'object') throw new Error(`${file.name}: not a mapping file (expected the JSON written by --save-mapping)`)
  const read = { ...(data.read ?? {}) }
  const delimiters = { comma: ',', semicolon: ';', tab: '\t', pipe: '|' }
  if (read.delimiter) read.delimiter = delimiters[read.delimiter] ?? read.delimiter
  if (read.encoding) read.encoding = /1252|latin/.test(read.encoding) ? 'cp1252' : 'utf8'
  return { columns: data.columns, read }
}

$('load-projects').addEventListener('click', async () => {
  try {
    const projects = await api('/v1/projects')
    const select = $('project')
    select.innerHTML = ''
    select.append(new Option('(choose a project)', ''))
    for (const p of projects) select.append(new Option(p.name, p.id))
    select.disabled = false
    say('pin-status', `${projects.length} project(s) found.`)
  } catch (err) { say('pin-status', err.message, 'bad') }
})

$('project').addEventListener('change', async () => {
  state.bundle = null; state.check = null
  $('project-facts').hidden = true
  if (!$('project').value) return refresh()
  try {
    state.bundle = { ...(await api(`/v1/projects/${encodeURIComponent($('project').value)}/kit`)), online: true }
    showBundle()
  } catch (err) { say('pin-status', err.message, 'bad') }
  refresh()
})

$('pinned').addEventListener('input', () => { pinned(); refresh() })
$('data').addEventListener('change', () => { state.check = null; refresh() })
$('mapping').addEventListener('change', () => { state.check = null; refresh() })

$('secret').addEventListener('change', async () => {
  state.secret = null
  const file = $('secret').files[0]
  if (file) {
    const bytes = new Uint8Array(await file.arrayBuffer())
    if (bytes.length !== 32) say('kcv', `${file.name}: not a pprl secret file (32 bytes, made by pprl keygen)`, 'bad')
    else {
      state.secret = bytes
      say('kcv', `Key check value ${await keyCheckValue(bytes)}: it must be the same for every partner of the project.`)
    }
  }
  refresh()
})

$('check').addEventListener('click', async () => {
  state.check = null; refresh()
  try {
    const mapping = await readMapping()
    say('check-summary', 'Checking...')
    const { check } = await runWorker({ cmd: 'check', kit: state.bundle.kit, file: $('data').files[0], mapping: mapping.columns, read: mapping.read })
    state.check = check
    state.mapping = mapping
    const body = $('report').querySelector('tbody')
    body.innerHTML = ''
    for (const f of check.fields) {
      const tr = document.createElement('tr')
      for (const v of [f.field, f.column, f.present, f.missing, f.invalid, f.invalid_rows.join(', '), f.distinct_share, f.swapped]) {
        const td = document.createElement('td'); td.textContent = v === null || v === undefined ? '' : String(v); tr.append(td)
      }
      body.append(tr)
    }
    $('report').hidden = false
    const rejected = check.rejectedCount ? `; ${check.rejectedCount.toLocaleString()} rows have no usable identifier and will not be sent (first: ${check.rejects.slice(0, 5).map(([r, why]) => `row ${r} ${why}`).join('; ')})` : ''
    say('check-summary', `${check.rowsIn.toLocaleString()} rows read, ${check.rowsKept.toLocaleString()} will be hashed${rejected}. Row numbers are spreadsheet rows (the header is row 1).`)
  } catch (err) { say('check-summary', err.message, 'bad') }
  refresh()
})

$('submit').addEventListener('click', async () => {
  if (!pinned()) return
  $('submit').disabled = true
  say('verdict', '')
  try {
    const b = state.bundle
    const sealed = await seal()
    const receipt = await upload(sealed)
    say('verdict', `Received as version ${receipt.version}; waiting for the enclave's verdict...`)
    for (let i = 0; i < 600; i++) {
      const now = await api(`/v1/projects/${encodeURIComponent(b.project_id)}/submissions/${receipt.id}`)
      if (now.status === 'accepted') { say('verdict', `Accepted: version ${now.version}, ${now.rows.toLocaleString()} rows. Nothing more to do.`, 'ok verdict'); return }
      if (now.status === 'rejected') { say('verdict', `Rejected by the enclave: ${now.reason}`, 'bad verdict'); return }
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
    say('verdict', 'Still waiting for the enclave; check again later.')
  } catch (err) { say('verdict', err.message, 'bad verdict') } finally { refresh() }
})

function seal () {
  const b = state.bundle
  return runWorker({
    cmd: 'seal', kit: b.kit, file: $('data').files[0], read: state.mapping.read, secret: state.secret,
    columns: state.check.columns, check: state.check,
    recipient: hexBytes(b.enclave_public_key_hex),
    projectId: b.project_id, policyFingerprint: b.policy_fingerprint
  })
}

$('save-sealed').addEventListener('click', async () => {
  if (!pinned()) return
  $('save-sealed').disabled = true
  try {
    const sealed = await seal()
    const link = $('sealed-link')
    link.href = URL.createObjectURL(sealed.blob); link.download = 'extract.sealed'; link.hidden = false
    const env = $('envelope-link')
    env.href = URL.createObjectURL(new Blob([sealed.header], { type: 'text/plain' })); env.download = 'extract.envelope'; env.hidden = false
    say('verdict', `Sealed: ${sealed.envelope.rows.toLocaleString()} rows, ${(sealed.envelope.sealed_bytes / 1e6).toFixed(2)} MB. Save both files; upload them with the X-PPRL-Envelope header when you are online.`, 'ok verdict')
  } catch (err) { say('verdict', err.message, 'bad verdict') } finally { refresh() }
})

function upload ({ blob, header }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', `${serviceUrl()}/v1/projects/${encodeURIComponent(state.bundle.project_id)}/submissions`)
    xhr.setRequestHeader('Authorization', `Bearer ${$('token').value.trim()}`)
    xhr.setRequestHeader('Content-Type', 'application/vnd.pprl.sealed')
    xhr.setRequestHeader('X-PPRL-Envelope', header)
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) { $('progress').value = Math.round(100 * e.loaded / e.total); $('progress-text').textContent = `uploading: ${(e.loaded / 1e6).toFixed(1)} of ${(e.total / 1e6).toFixed(1)} MB` }
    }
    xhr.onload = () => {
      let body = {}
      try { body = JSON.parse(xhr.responseText) } catch {}
      if (xhr.status >= 200 && xhr.status < 300) resolve(body); else reject(new Error(body.detail || body.error || `upload failed (${xhr.status})`))
    }
    xhr.onerror = () => reject(new Error('the upload failed: check the service address and your connection'))
    xhr.send(blob)
  })
}

if (!standalone) $('service-row').hidden = true
refresh()
