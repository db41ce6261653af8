/** Readers for the JSON an OpenAI-compatible upstream sends: usage, finish reasons, text. */

const moderationCode = /content[_ -]?(filter|policy)|moderation|safety/i;

/** Whether an upstream error payload's code or type names a content policy. Its message is not read. */
export function isModerationError(payload: unknown): boolean {
  let value = payload;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return false;
    }
  }
  if (!isRecord(value)) return false;
  const error = isRecord(value.error) ? value.error : value;
  return [error.code, error.type].some((field) => typeof field === 'string' && moderationCode.test(field));
}

export function readUsage(usage: unknown): { promptTokens?: number; completionTokens?: number } | undefined {
  if (!isRecord(usage)) return undefined;
  const promptTokens = nonNegativeInt(usage.prompt_tokens);
  const completionTokens = nonNegativeInt(usage.completion_tokens);
  if (promptTokens === undefined && completionTokens === undefined) return undefined;
  return {
    ...(promptTokens === undefined ? {} : { promptTokens }),
    ...(completionTokens === undefined ? {} : { completionTokens }),
  };
}

function nonNegativeInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined;
}

export function firstFinishReason(choices: unknown): string | undefined {
  if (!Array.isArray(choices)) return undefined;
  const reasons = choices
    .filter(isRecord)
    .map((choice) => choice.finish_reason)
    .filter((r): r is string => typeof r === 'string');
  return reasons.includes('content_filter') ? 'content_filter' : reasons[0];
}

export function choicesText(choices: unknown): string {
  if (!Array.isArray(choices)) return '';
  const parts: string[] = [];
  for (const choice of choices.filter(isRecord)) {
    // A completion choice has text, a chat choice a message; never count both.
    if (typeof choice.text === 'string') parts.push(choice.text);
    else if (isRecord(choice.message)) collectMessageText(choice.message, parts);
  }
  return parts.join('');
}

/** Text an assistant message or delta carries: content, reasoning and tool-call arguments. */
export function collectMessageText(message: Record<string, unknown>, parts: string[]): void {
  if (typeof message.content === 'string') parts.push(message.content);
  if (typeof message.reasoning_content === 'string') parts.push(message.reasoning_content);
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls.filter(isRecord)) {
      if (isRecord(call.function)) {
        if (typeof call.function.name === 'string') parts.push(call.function.name);
        if (typeof call.function.arguments === 'string') parts.push(call.function.arguments);
      }
    }
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
