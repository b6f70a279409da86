// Minimal JSON reader/writer for Arcana envelopes.
//
// `parseJson(text)` returns a JsonValue tree (or null on a syntax error, with
// the reason in `lastJsonError()`). Every value keeps its exact source text in
// `raw`, so a request body can be forwarded verbatim. `jsonString(s)` quotes
// and escapes a string; `JsonObject` builds an object:
//
//   new JsonObject().str("message", "Hello").int("n", 3).toString()
//   // => {"message":"Hello","n":3}

export enum JsonKind { Null, Bool, Number, String, Array, Object }

export class JsonValue {
  kind: JsonKind = JsonKind.Null;
  /** Exact JSON source text of this value. */
  raw: string = "null";
  /** Decoded text for strings. */
  str: string = "";
  bool: bool = false;
  num: f64 = 0;
  items: JsonValue[] = [];
  keys: string[] = [];
  values: JsonValue[] = [];

  isNull(): bool { return this.kind == JsonKind.Null; }
  isString(): bool { return this.kind == JsonKind.String; }
  isObject(): bool { return this.kind == JsonKind.Object; }
  isArray(): bool { return this.kind == JsonKind.Array; }

  /** Member `key` of an object (the last one wins on duplicates), else null. */
  get(key: string): JsonValue | null {
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (this.keys[i] == key) return this.values[i];
    }
    return null;
  }

  /** Member `key` when it is a string, else null. */
  getString(key: string): string | null {
    const v = this.get(key);
    if (v == null || v.kind != JsonKind.String) return null;
    return v.str;
  }
}

let lastError: string = "";

/** Why the last `parseJson` call returned null. */
export function lastJsonError(): string { return lastError; }

/** Parse a complete JSON text; null (see `lastJsonError`) when invalid. */
export function parseJson(text: string): JsonValue | null {
  const p = new Parser(text);
  const v = p.value();
  if (v == null) { lastError = p.err; return null; }
  p.ws();
  if (p.i != text.length) { lastError = "trailing characters at " + p.i.toString(); return null; }
  return v;
}

class Parser {
  s: string;
  i: i32 = 0;
  err: string = "";
  constructor(s: string) { this.s = s; }

  fail(msg: string): JsonValue | null {
    if (this.err.length == 0) this.err = msg + " at offset " + this.i.toString();
    return null;
  }

  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.i++;
    }
  }

  value(): JsonValue | null {
    this.ws();
    if (this.i >= this.s.length) return this.fail("unexpected end of input");
    const start = this.i;
    const c = this.s.charCodeAt(this.i);
    let v: JsonValue | null;
    if (c == 0x7b) v = this.object();
    else if (c == 0x5b) v = this.array();
    else if (c == 0x22) v = this.string();
    else if (c == 0x74) v = this.literal("true", JsonKind.Bool, true);
    else if (c == 0x66) v = this.literal("false", JsonKind.Bool, false);
    else if (c == 0x6e) v = this.literal("null", JsonKind.Null, false);
    else v = this.number();
    if (v != null) v.raw = this.s.substring(start, this.i);
    return v;
  }

  literal(word: string, kind: JsonKind, b: bool): JsonValue | null {
    if (this.s.substr(this.i, word.length) != word) return this.fail("invalid literal");
    this.i += word.length;
    const v = new JsonValue();
    v.kind = kind;
    v.bool = b;
    return v;
  }

  number(): JsonValue | null {
    const start = this.i;
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      const ok = (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45;
      if (!ok) break;
      this.i++;
    }
    if (this.i == start) return this.fail("unexpected character");
    const v = new JsonValue();
    v.kind = JsonKind.Number;
    v.num = parseFloat(this.s.substring(start, this.i));
    if (isNaN(v.num)) return this.fail("invalid number");
    return v;
  }

  string(): JsonValue | null {
    this.i++; // opening quote
    let out = "";
    let run = this.i;
    while (true) {
      if (this.i >= this.s.length) return this.fail("unterminated string");
      const c = this.s.charCodeAt(this.i);
      if (c == 0x22) break;
      if (c < 0x20) return this.fail("control character in string");
      if (c != 0x5c) { this.i++; continue; }
      out += this.s.substring(run, this.i);
      const e = this.s.charCodeAt(this.i + 1);
      this.i += 2;
      if (e == 0x22) out += "\"";
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) {
        const code = this.hex4();
        if (code < 0) return this.fail("invalid \\u escape");
        out += String.fromCharCode(code);
      } else return this.fail("invalid escape");
      run = this.i;
    }
    out += this.s.substring(run, this.i);
    this.i++; // closing quote
    const v = new JsonValue();
    v.kind = JsonKind.String;
    v.str = out;
    return v;
  }

  /** Read 4 hex digits (after `\\u`); -1 when invalid. */
  hex4(): i32 {
    if (this.i + 4 > this.s.length) return -1;
    let code = 0;
    for (let k = 0; k < 4; k++) {
      const h = this.s.charCodeAt(this.i + k);
      let d = -1;
      if (h >= 0x30 && h <= 0x39) d = h - 0x30;
      else if (h >= 0x61 && h <= 0x66) d = h - 0x61 + 10;
      else if (h >= 0x41 && h <= 0x46) d = h - 0x41 + 10;
      if (d < 0) return -1;
      code = (code << 4) | d;
    }
    this.i += 4;
    return code;
  }

  array(): JsonValue | null {
    this.i++;
    const v = new JsonValue();
    v.kind = JsonKind.Array;
    this.ws();
    if (this.i < this.s.length && this.s.charCodeAt(this.i) == 0x5d) { this.i++; return v; }
    while (true) {
      const item = this.value();
      if (item == null) return null;
      v.items.push(item);
      this.ws();
      const c = this.i < this.s.length ? this.s.charCodeAt(this.i) : -1;
      this.i++;
      if (c == 0x5d) return v;
      if (c != 0x2c) return this.fail("expected ',' or ']'");
    }
  }

  object(): JsonValue | null {
    this.i++;
    const v = new JsonValue();
    v.kind = JsonKind.Object;
    this.ws();
    if (this.i < this.s.length && this.s.charCodeAt(this.i) == 0x7d) { this.i++; return v; }
    while (true) {
      this.ws();
      if (this.i >= this.s.length || this.s.charCodeAt(this.i) != 0x22) return this.fail("expected a string key");
      const key = this.string();
      if (key == null) return null;
      this.ws();
      if (this.i >= this.s.length || this.s.charCodeAt(this.i) != 0x3a) return this.fail("expected ':'");
      this.i++;
      const member = this.value();
      if (member == null) return null;
      v.keys.push(key.str);
      v.values.push(member);
      this.ws();
      const c = this.i < this.s.length ? this.s.charCodeAt(this.i) : -1;
      this.i++;
      if (c == 0x7d) return v;
      if (c != 0x2c) return this.fail("expected ',' or '}'");
    }
  }
}

const HEX = "0123456789abcdef";

/** Quote and escape `s` as a JSON string literal. */
export function jsonString(s: string): string {
  let out = "\"";
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(run, i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15);
    run = i + 1;
  }
  return out + s.substring(run) + "\"";
}

/** Builds a JSON object member by member; `toString()` gives the text. */
export class JsonObject {
  private parts: string[] = [];

  /** Add a member whose value is already JSON text. */
  raw(key: string, json: string): JsonObject {
    this.parts.push(jsonString(key) + ":" + json);
    return this;
  }
  str(key: string, value: string): JsonObject { return this.raw(key, jsonString(value)); }
  int(key: string, value: i64): JsonObject { return this.raw(key, value.toString()); }
  num(key: string, value: f64): JsonObject { return this.raw(key, value.toString()); }
  bool(key: string, value: bool): JsonObject { return this.raw(key, value ? "true" : "false"); }

  toString(): string { return "{" + this.parts.join(",") + "}"; }
}

/** Builds a JSON array element by element; `toString()` gives the text. */
export class JsonArray {
  private parts: string[] = [];

  /** Add an element that is already JSON text (e.g. a `JsonObject`'s `toString()`). */
  raw(json: string): JsonArray {
    this.parts.push(json);
    return this;
  }
  str(value: string): JsonArray { return this.raw(jsonString(value)); }
  int(value: i64): JsonArray { return this.raw(value.toString()); }
  num(value: f64): JsonArray { return this.raw(value.toString()); }
  bool(value: bool): JsonArray { return this.raw(value ? "true" : "false"); }
  get length(): i32 { return this.parts.length; }

  toString(): string { return "[" + this.parts.join(",") + "]"; }
}
