// HMAC-SHA256 for many short messages under one key and one domain prefix, synchronously.
//
// Why not WebCrypto's sign() per token: it is asynchronous, so every token costs a
// promise and a trip through the event loop; measured in Node, 20,000 rows of the UK
// spec took 5.4 s of token time that way. Here the key's inner and outer pads and the
// domain prefix are absorbed once (the same midstate trick linkage/encode/tokens.py uses
// with hashlib's copy()), and each token costs two or three SHA-256 compressions of plain
// 32-bit arithmetic. Correctness is checked three ways: against WebCrypto and
// @noble/hashes on random inputs (test/hmac.test.js) and against every token of the
// shared vectors, which Python made.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2])
const IV = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19])
const W = new Uint32Array(64)

/** One SHA-256 compression of the 64-byte block at `off` in `bytes` into `state`. */
function compress (state, bytes, off) {
  for (let i = 0; i < 16; i++) {
    const j = off + 4 * i
    W[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3]
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15]; const b = W[i - 2]
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3)
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10)
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0
  }
  let a = state[0]; let b = state[1]; let c = state[2]; let d = state[3]
  let e = state[4]; let f = state[5]; let g = state[6]; let h = state[7]
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0
    h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0
  }
  state[0] += a; state[1] += b; state[2] += c; state[3] += d
  state[4] += e; state[5] += f; state[6] += g; state[7] += h
}

/** The state after absorbing whole 64-byte blocks; returns [state, leftover bytes]. */
function absorb (state, bytes) {
  let off = 0
  for (; off + 64 <= bytes.length; off += 64) compress(state, bytes, off)
  return bytes.slice(off)
}

/** Finish a hash from `state` (after `done` bytes absorbed) over `tail`; writes 32 bytes to `out`. */
function finish (state, done, tail, out) {
  const total = done + tail.length
  const blocks = tail.length + 9 > 64 ? 2 : 1
  const buf = new Uint8Array(64 * blocks)
  buf.set(tail)
  buf[tail.length] = 0x80
  const bits = total * 8
  const end = 64 * blocks
  buf[end - 5] = Math.floor(bits / 2 ** 32) & 0xff
  buf[end - 4] = bits >>> 24; buf[end - 3] = (bits >>> 16) & 0xff; buf[end - 2] = (bits >>> 8) & 0xff; buf[end - 1] = bits & 0xff
  for (let i = 0; i < blocks; i++) compress(state, buf, 64 * i)
  for (let i = 0; i < 8; i++) {
    out[4 * i] = state[i] >>> 24; out[4 * i + 1] = (state[i] >>> 16) & 0xff; out[4 * i + 2] = (state[i] >>> 8) & 0xff; out[4 * i + 3] = state[i] & 0xff
  }
  return out
}

/** SHA-256 of `bytes` (for the tests). */
export function sha256 (bytes) {
  const state = IV.slice()
  const tail = absorb(state, bytes)
  return finish(state, bytes.length - tail.length, tail, new Uint8Array(32))
}

/** HMAC-SHA256 under `key` of `prefix | message`, for many messages. */
export class PrefixedHmac {
  constructor (key, prefix) {
    if (key.length > 64) key = sha256(key)
    const ipad = new Uint8Array(64); const opad = new Uint8Array(64)
    for (let i = 0; i < 64; i++) { const k = key[i] ?? 0; ipad[i] = k ^ 0x36; opad[i] = k ^ 0x5c }
    this.inner = IV.slice(); compress(this.inner, ipad, 0)
    this.outer = IV.slice(); compress(this.outer, opad, 0)
    const innerState = this.inner.slice()
    this.prefixTail = absorb(innerState, prefix)
    this.innerAfterPrefix = innerState
    this.absorbed = 64 + prefix.length - this.prefixTail.length
    this.state = new Uint32Array(8)
    this.digest = new Uint8Array(32)
  }

  /** The MAC of prefix | message (a fresh 32-byte array). */
  mac (message) {
    const state = this.state
    state.set(this.innerAfterPrefix)
    let tail = this.prefixTail
    if (message.length) { tail = new Uint8Array(this.prefixTail.length + message.length); tail.set(this.prefixTail); tail.set(message, this.prefixTail.length) }
    const rest = absorb(state, tail)
    finish(state, this.absorbed + tail.length - rest.length, rest, this.digest)
    state.set(this.outer)
    return finish(state, 64, this.digest, new Uint8Array(32))
  }
}
