// Keyed tokens: HMAC-SHA256 with domain separation, truncated (linkage/encode/tokens.py):
// MAC input = "pprl/v1\0" + field + "\0" + variant + "\0" + value, under the project secret.
// Tokens use the synchronous midstate HMAC in hmac.js (see there why not WebCrypto's
// sign(), which still makes the key check value); each (field, variant) keeps a bounded
// memo of value -> token.

import { PrefixedHmac } from './hmac.js'

const encoder = new TextEncoder()
const CACHE_LIMIT = 100000
const keyCache = new WeakMap()

async function hmacKey (key) {
  if (!keyCache.has(key)) {
    keyCache.set(key, crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']))
  }
  return keyCache.get(key)
}

export function domainPrefix (field, variant) {
  return encoder.encode(`pprl/v1\0${field}\0${variant}\0`)
}

export class TokenMaker {
  constructor (key, field, variant, length) {
    this.hmac = new PrefixedHmac(key, domainPrefix(field, variant))
    this.length = length
    this.cache = new Map()
  }

  /** The token (Uint8Array) of one normalised value. */
  token (value) {
    let hit = this.cache.get(value)
    if (hit) return hit
    if (this.cache.size > CACHE_LIMIT) this.cache.clear()
    hit = this.hmac.mac(encoder.encode(value)).slice(0, this.length)
    this.cache.set(value, hit)
    return hit
  }
}

/** The key check value: first 16 hex digits of HMAC-SHA256(secret, label). */
export async function keyCheckValue (key) {
  const k = await hmacKey(key)
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', k, encoder.encode('pprl key check value v1')))
  return toHex(mac).slice(0, 16)
}

export function toHex (bytes) {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}
