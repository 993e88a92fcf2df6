import { test } from 'node:test'
import assert from 'node:assert/strict'
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 as nobleSha } from '@noble/hashes/sha2.js'
import { PrefixedHmac, sha256 } from '../src/hmac.js'

function concat (a, b) { const o = new Uint8Array(a.length + b.length); o.set(a); o.set(b, a.length); return o }

test('SHA-256 and HMAC agree with @noble/hashes and WebCrypto at every length around the block edges', async () => {
  for (let n = 0; n < 300; n++) {
    const data = crypto.getRandomValues(new Uint8Array(n))
    assert.deepEqual(sha256(data), nobleSha(data), `sha256 of ${n} bytes`)
  }
  for (const keyLength of [16, 32, 64, 65, 100]) {
    const key = crypto.getRandomValues(new Uint8Array(keyLength))
    const wc = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
    for (const prefixLength of [0, 13, 63, 64, 70]) {
      const prefix = crypto.getRandomValues(new Uint8Array(prefixLength))
      const mac = new PrefixedHmac(key, prefix)
      for (let n = 0; n < 140; n += 7) {
        const msg = crypto.getRandomValues(new Uint8Array(n))
        const expected = hmac(nobleSha, key, concat(prefix, msg))
        assert.deepEqual(mac.mac(msg), expected)
        assert.deepEqual(mac.mac(msg), new Uint8Array(await crypto.subtle.sign('HMAC', wc, concat(prefix, msg))))
      }
    }
  }
})
