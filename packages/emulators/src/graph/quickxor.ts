/**
 * OneDrive's quickXorHash (reference §A.11), for the hashes the emulator reports. A copy of the
 * algorithm in `@stowage/onedrive`: emulators must not depend on a provider package, and an
 * emulator that shared the provider's code could not catch a bug in it. Byte i of the input is XORed
 * in at bit offset (i × 11) mod 160 of a 160-bit block; the 64-bit little-endian length is XORed into
 * the last 8 bytes; the result is base64.
 */
export function quickXorHash(bytes: Uint8Array): string {
  // Bytes 160 apart land on the same bit offset (11 × 160 ≡ 0 mod 160), so fold first, spread once.
  // The fold XORs 32-bit words where the input allows: a byte at a time, a 256 MiB commit took a
  // second of the emulator's time, which a benchmark would have charged to the client.
  const folded = new Uint8Array(160);
  const periods = Math.floor(bytes.length / 160);
  const aligned = (bytes.byteOffset & 3) === 0;
  if (aligned && periods > 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, periods * 40);
    const accumulator = new Uint32Array(folded.buffer);
    for (let base = 0; base < words.length; base += 40) {
      for (let k = 0; k < 40; k++) accumulator[k]! ^= words[base + k]!;
    }
  }
  for (let i = aligned ? periods * 160 : 0; i < bytes.length; i++) folded[i % 160]! ^= bytes[i]!;
  const out = new Uint8Array(21);
  for (let j = 0; j < 160; j++) {
    const shift = (j * 11) % 160;
    const spread = folded[j]! << (shift % 8);
    out[shift >> 3]! ^= spread & 0xff;
    out[(shift >> 3) + 1]! ^= spread >> 8;
  }
  // Bits pushed past bit 159 wrap round to bit 0.
  out[0]! ^= out[20]!;
  let length = bytes.length;
  for (let i = 12; i < 20; i++) {
    out[i]! ^= length % 256;
    length = Math.floor(length / 256);
  }
  return Buffer.from(out.subarray(0, 20)).toString("base64");
}
