// Package ikecrypto holds the cryptography of IKEv2 (RFC 7296): key
// exchange groups, the PRF and prf+, derivation of the IKE SA and Child SA
// keys, protection of the Encrypted (SK) payload and PSK authentication.
//
// Every primitive comes from the standard library or golang.org/x/crypto;
// this package only arranges them the way the RFCs say. Algorithms are
// named by their IANA transform IDs (see package message).
package ikecrypto

import "errors"

// Sentinel errors. The IKE state machine maps them to notifications.
var (
	// ErrUnsupported means a transform ID this package does not implement.
	ErrUnsupported = errors.New("unsupported algorithm")
	// ErrWeak means an algorithm the default policy forbids.
	ErrWeak = errors.New("algorithm forbidden by policy")
	// ErrPublicKey means a peer's key exchange value failed validation.
	ErrPublicKey = errors.New("invalid key exchange public value")
	// ErrIntegrity means an SK payload's ICV or AEAD tag did not verify.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrPadding means the decrypted padding is inconsistent.
	ErrPadding = errors.New("bad padding")
	// ErrShort means an SK payload too short for IV, ICV and pad length.
	ErrShort = errors.New("encrypted payload too short")
	// ErrKeyLength means a key of the wrong size for the algorithm.
	ErrKeyLength = errors.New("wrong key length")
)
