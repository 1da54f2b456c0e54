/**
 * OneDrive's quickXorHash: a 160-bit block into which byte i of the input is XORed at bit offset
 * (i × 11) mod 160, with the 64-bit little-endian length XORed into the last 8 bytes; base64 output.
 *
 * Since 11 and 160 are coprime, bytes 160 apart land at the same bit offset, so the input is first
 * folded into a 160-byte accumulator and spread into the 20-byte result once, at the end. The fold
 * XORs 32-bit words (40 per period) where it can: a byte at a time, hashing 256 MiB took about a
 * second, as long as sending it to a local server.
 */
const WIDTH_BYTES = 20;
const PERIOD = 160;
const PERIOD_WORDS = PERIOD / 4;
/** Unaligned input is copied through this many whole periods at a time. */
const SCRATCH_PERIODS = 512;

export class QuickXorHash {
  private readonly folded = new Uint8Array(PERIOD);
  private readonly foldedWords = new Uint32Array(this.folded.buffer);
  private scratch: Uint8Array | undefined;
  private position = 0;
  private length = 0;

  update(bytes: Uint8Array): this {
    const total = bytes.length;
    let i = 0;
    // Byte by byte until the period restarts, so that whole periods line up with the accumulator.
    while (i < total && this.position !== 0) this.foldByte(bytes[i++]!);
    const periods = Math.floor((total - i) / PERIOD);
    if (periods > 0) {
      this.foldPeriods(bytes, i, periods);
      i += periods * PERIOD;
    }
    while (i < total) this.foldByte(bytes[i++]!);
    this.length += total;
    return this;
  }

  /** The 20-byte hash. */
  digestBytes(): Uint8Array {
    const out = new Uint8Array(WIDTH_BYTES + 1);
    for (let j = 0; j < PERIOD; j++) {
      const value = this.folded[j]!;
      if (value === 0) continue;
      const shift = (j * 11) % PERIOD;
      const spread = value << (shift & 7);
      out[shift >> 3]! ^= spread & 0xff;
      out[(shift >> 3) + 1]! ^= spread >> 8;
    }
    // Bit offsets past 159 wrap round to the start of the block.
    out[0]! ^= out[WIDTH_BYTES]!;
    const result = out.subarray(0, WIDTH_BYTES);
    let length = this.length;
    for (let i = 0; i < 8; i++) {
      result[WIDTH_BYTES - 8 + i]! ^= length % 256;
      length = Math.floor(length / 256);
    }
    return result;
  }

  /** The hash as OneDrive reports it: base64 of the 20 bytes. */
  digest(): string {
    return Buffer.from(this.digestBytes()).toString("base64");
  }

  private foldByte(byte: number): void {
    this.folded[this.position]! ^= byte;
    this.position = this.position === PERIOD - 1 ? 0 : this.position + 1;
  }

  /** XORs `periods` whole periods from `bytes[start]` into the accumulator, a word at a time. */
  private foldPeriods(bytes: Uint8Array, start: number, periods: number): void {
    const offset = bytes.byteOffset + start;
    if (offset % 4 === 0) {
      this.foldWords(new Uint32Array(bytes.buffer, offset, periods * PERIOD_WORDS));
      return;
    }
    // A Uint32Array view needs 4-byte alignment: copy through an aligned scratch buffer instead.
    this.scratch ??= new Uint8Array(SCRATCH_PERIODS * PERIOD);
    const words = new Uint32Array(this.scratch.buffer);
    for (let done = 0; done < periods; done += SCRATCH_PERIODS) {
      const count = Math.min(SCRATCH_PERIODS, periods - done);
      const from = start + done * PERIOD;
      this.scratch.set(bytes.subarray(from, from + count * PERIOD));
      this.foldWords(words.subarray(0, count * PERIOD_WORDS));
    }
  }

  private foldWords(words: Uint32Array): void {
    const accumulator = this.foldedWords;
    for (let base = 0; base < words.length; base += PERIOD_WORDS) {
      for (let k = 0; k < PERIOD_WORDS; k++) accumulator[k]! ^= words[base + k]!;
    }
  }
}

/** quickXorHash of a whole byte array, base64. */
export function quickXorHash(bytes: Uint8Array): string {
  return new QuickXorHash().update(bytes).digest();
}
