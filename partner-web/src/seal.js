// Sealing to the enclave, byte-compatible with service/crypto/sealing.py:
//   header = "PPRL-SEAL-v1" | ephemeral X25519 public key (32) | salt (16) | chunk size (u32 BE)
//   key    = HKDF-SHA256(ECDH(ephemeral, enclave), salt, "pprl seal v1" | eph pub | enclave pub)
//   chunk i = AES-256-GCM(nonce = i as 11 bytes BE | last flag, aad = header)
// X25519 comes from WebCrypto where the browser has it, otherwise from @noble/curves
// (audited); HKDF and AES-GCM are WebCrypto everywhere. SHA-256 of the sealed bytes is
// incremental (@noble/hashes), because WebCrypto's digest is not.

import { x25519 } from '@noble/curves/ed25519.js'
import { sha256 } from '@noble/hashes/sha2.js'

const MAGIC = new TextEncoder().encode('PPRL-SEAL-v1')
const LABEL = new TextEncoder().encode('pprl seal v1')
export const DEFAULT_CHUNK = 1 << 20

function concat (...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

async function ecdh (recipient) {
  try {
    const pair = await crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits'])
    const pub = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey))
    const peer = await crypto.subtle.importKey('raw', recipient, { name: 'X25519' }, false, [])
    const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: 'X25519', public: peer }, pair.privateKey, 256))
    return { pub, shared, via: 'webcrypto' }
  } catch (err) {
    const secret = x25519.utils.randomSecretKey()
    return { pub: x25519.getPublicKey(secret), shared: x25519.getSharedSecret(secret, recipient), via: 'noble' }
  }
}

function nonce (index, last) {
  const n = new Uint8Array(12)
  let i = index
  for (let b = 10; b >= 0 && i > 0; b--) { n[b] = i % 256; i = Math.floor(i / 256) }
  n[11] = last ? 1 : 0
  return n
}

/** Streams plaintext in, sealed parts out (to `emit`), hashing what it emits. */
export class SealWriter {
  static async create (recipient, emit, chunk = DEFAULT_CHUNK) {
    if (!(recipient instanceof Uint8Array) || recipient.length !== 32) throw new Error('the enclave public key must be 32 raw bytes')
    const w = new SealWriter()
    const { pub, shared, via } = await ecdh(recipient)
    const salt = crypto.getRandomValues(new Uint8Array(16))
    const size = new Uint8Array(4)
    new DataView(size.buffer).setUint32(0, chunk)
    w.header = concat(MAGIC, pub, salt, size)
    const ikm = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey'])
    w.key = await crypto.subtle.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt, info: concat(LABEL, pub, recipient) },
      ikm, { name: 'AES-GCM', length: 256 }, false, ['encrypt'])
    w.via = via
    w.chunk = chunk
    w.pending = []
    w.pendingBytes = 0
    w.index = 0
    w.emitFn = emit
    w.sealedHash = sha256.create()
    w.sealedBytes = 0
    w.plainHash = sha256.create()
    w.emit(w.header)
    return w
  }

  emit (bytes) {
    this.sealedHash.update(bytes)
    this.sealedBytes += bytes.length
    this.emitFn(bytes)
  }

  async write (data) {
    this.plainHash.update(data)
    this.pending.push(data)
    this.pendingBytes += data.length
    while (this.pendingBytes > this.chunk) await this.seal(this.take(this.chunk), false)
  }

  take (n) {
    const all = concat(...this.pending)
    this.pending = [all.subarray(n)]
    this.pendingBytes = all.length - n
    return all.subarray(0, n)
  }

  async seal (plain, last) {
    const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce(this.index, last), additionalData: this.header }, this.key, plain)
    this.index++
    this.emit(new Uint8Array(sealed))
  }

  /** Seal the last chunk; returns {sealedBytes, sealedSha256} of everything emitted. */
  async close () {
    await this.seal(this.take(this.pendingBytes), true)
    return { sealedBytes: this.sealedBytes, sealedSha256: hex(this.sealedHash.digest()) }
  }
}

export function hex (bytes) {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

/** SHA-256 of the raw public key, 64 hex digits (service/crypto/envelope.py key_fingerprint). */
export function keyFingerprint (raw) { return hex(sha256(raw)) }

/** Hex in groups of four, for reading aloud and comparing by eye. */
export function formatFingerprint (fp) { return fp.match(/.{1,4}/g).join(' ') }
