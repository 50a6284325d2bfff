// Package esp implements the packet processing of an ESP security
// association (RFC 4303): sealing outbound packets and opening inbound ones
// with the algorithms IKEv2 negotiates, including ESP-NULL (RFC 2410),
// AES-GCM (RFC 4106), AES-GMAC (RFC 4543) and ChaCha20-Poly1305 (RFC 7634),
// extended sequence numbers, and the anti-replay window of RFC 6479.
//
// An Outbound is used by one sending goroutine and an Inbound by one
// receiving goroutine; neither allocates per packet. Their counters may be
// read from any goroutine.
package esp
