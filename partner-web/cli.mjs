#!/usr/bin/env node
// The page's encoder from the command line, for tests and benchmarks (not for partners:
// they use the page or `pprl hash` + `pprl submit`):
//   node cli.mjs KIT.json SECRET_FILE INPUT.csv OUT.sealed [--check-only]
// KIT.json is GET /v1/projects/{id}/kit. Prints one JSON object: the check report and the
// envelope header to send as X-PPRL-Envelope with OUT.sealed as the body.
import { readFileSync, createReadStream, openSync, writeSync, closeSync } from 'node:fs'
import { Readable } from 'node:stream'
import { checkExtract, sealExtract, csvBatches } from './src/extract.js'

const [kitPath, secretPath, input, output] = process.argv.slice(2)
const bundle = JSON.parse(readFileSync(kitPath, 'utf8'))
const secret = parseSecret(readFileSync(secretPath))
const open = () => Readable.toWeb(createReadStream(input))
const started = performance.now()
const check = await checkExtract(bundle.kit, csvBatches(open))
const checked = performance.now()
if (process.argv.includes('--check-only')) {
  console.log(JSON.stringify({ check }))
  process.exit(0)
}
const fd = openSync(output, 'w', 0o600)
const sealed = await sealExtract({
  kit: bundle.kit, secret, columns: check.columns, batches: csvBatches(open), check,
  recipient: Uint8Array.from(Buffer.from(bundle.enclave_public_key_hex, 'hex')),
  projectId: bundle.project_id, policyFingerprint: bundle.policy_fingerprint,
  emit: (bytes) => writeSync(fd, bytes)
})
closeSync(fd)
const done = performance.now()
console.log(JSON.stringify({ check: { ...check, rejects: check.rejects.slice(0, 20) }, envelope: sealed.envelope, header: sealed.header, via: sealed.via,
  seconds: { check: (checked - started) / 1000, seal: (done - checked) / 1000 } }))

function parseSecret (bytes) {
  // the file `pprl keygen` writes: exactly 32 random bytes
  if (bytes.length !== 32) throw new Error(`${secretPath}: not a pprl secret file (32 bytes, made by pprl keygen)`)
  return new Uint8Array(bytes)
}
