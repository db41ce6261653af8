import { estimateReservation } from '../../../../domain/estimate';
import { requestCost, usd } from '../../../../domain/money';
import { AUDIO_TOKENS_PER_SECOND, estimatedAudioTokens, speechToTextUsage, speechUsage } from '../../../../src/inference/serve-audio';

// Speech prices: per audio second (transcription, translation) and per million input characters
// (speech), summed exactly with any token prices and rounded up once per request.
describe('requestCost in audio seconds and characters', () => {
  const whisper = { inputPerMillion: 0n, outputPerMillion: 0n, perAudioSecond: 100n }; // USD 0.006 a minute
  it('charges milliseconds of audio at a per-second price, rounded up once', () => {
    expect(requestCost({ inputTokens: 0n, outputTokens: 0n, audioMilliseconds: 1_686n }, whisper)).toBe(169n); // 168.6 -> 169
    expect(requestCost({ inputTokens: 0n, outputTokens: 0n, audioMilliseconds: 2_000n }, whisper)).toBe(200n);
  });
  it('charges characters at a per-million price, rounded up once', () => {
    const tts = { inputPerMillion: 0n, outputPerMillion: 0n, perMillionCharacters: usd('15') };
    expect(requestCost({ inputTokens: 0n, outputTokens: 0n, inputCharacters: 43n }, tts)).toBe(645n);
    expect(requestCost({ inputTokens: 0n, outputTokens: 0n, inputCharacters: 1n }, { ...tts, perMillionCharacters: 1n })).toBe(1n);
  });
  it('sums audio, characters and tokens exactly before the one rounding', () => {
    // 0.5 + 0.5 micro-USD is 1, not 2 as two roundings would give.
    const price = { inputPerMillion: 500_000n, outputPerMillion: 0n, perAudioSecond: 1n };
    expect(requestCost({ inputTokens: 1n, outputTokens: 0n, audioMilliseconds: 500n }, price)).toBe(1n);
  });
  it('reserves the measured duration at the price plus the margin', () => {
    const { amount, maximumCost } = estimateReservation({
      promptTokens: 0n,
      maxOutputTokens: 0n,
      audioMilliseconds: 1_686n,
      price: whisper,
      marginBasisPoints: 1_000n,
    });
    expect(maximumCost).toBe(186n); // 168.6 * 1.1 = 185.46 -> 186
    expect(amount).toBe(186n);
  });
});

describe('what an audio request is charged for', () => {
  const perSecond = { inputPerMillion: 0n, perAudioSecond: 101n };
  const tokenPriced = { inputPerMillion: 6_000_000n, perAudioSecond: 0n };
  it("takes the upstream's reported duration, never past the file's own duration rounded up to the second", () => {
    expect(speechToTextUsage({ reported: { kind: 'duration', seconds: 2 } }, 1.686, 1_686n, perSecond)).toEqual({
      inputTokens: 0n,
      outputTokens: 0n,
      estimated: false,
      audioMilliseconds: 2_000n,
    });
    expect(speechToTextUsage({ reported: { kind: 'duration', seconds: 900 } }, 1.686, 1_686n, perSecond).audioMilliseconds).toBe(2_000n);
  });
  it('takes reported tokens at token prices', () => {
    expect(speechToTextUsage({ reported: { kind: 'tokens', inputTokens: 120, outputTokens: 9 } }, 1.686, 1_686n, perSecond)).toEqual({
      inputTokens: 120n,
      outputTokens: 9n,
      estimated: false,
    });
  });
  it('falls back to the measured duration, marked estimated', () => {
    expect(speechToTextUsage({}, 1.686, 1_686n, perSecond)).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: true, audioMilliseconds: 1_686n });
  });
  it('falls back, for a model priced by the token only, to the estimated audio input tokens as well (17 a second, rounded up)', () => {
    expect(speechToTextUsage({}, 1.686, 1_686n, tokenPriced)).toEqual({ inputTokens: 29n, outputTokens: 0n, estimated: true, audioMilliseconds: 1_686n });
    expect(estimatedAudioTokens(1.686)).toBe(29);
    expect(estimatedAudioTokens(60)).toBe(AUDIO_TOKENS_PER_SECOND * 60);
  });
  it('charges a speech cut short for the share of the declared audio relayed, rounded up', () => {
    expect(speechUsage({ kind: 'client_disconnected', bytesRelayed: 1_000, declaredBytes: 3_000 }, 100).inputCharacters).toBe(34n);
    expect(speechUsage({ kind: 'completed', bytesRelayed: 3_000, declaredBytes: 3_000 }, 100).inputCharacters).toBe(100n);
    expect(speechUsage({ kind: 'client_disconnected', bytesRelayed: 1_000 }, 100).inputCharacters).toBe(100n);
  });
});
