// Package message encodes and decodes IKEv2 messages (RFC 7296 section 3):
// the fixed header and every payload the protocol defines, including the
// Encrypted payload (SK) and its fragment form (SKF, RFC 7383).
//
// Decoding is liberal in payload order and strict in everything else: every
// length field is checked against the bytes that are there, counts are
// bounded by the input, payloads that may appear once are rejected when
// repeated, unknown non-critical payloads are skipped and unknown critical
// ones are reported as a *CriticalPayloadError so the caller can answer
// UNSUPPORTED_CRITICAL_PAYLOAD. Encoding writes payloads in the order given;
// the IKE state machine builds them in the order RFC 7296 shows.
package message
