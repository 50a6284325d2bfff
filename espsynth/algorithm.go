package espsynth

import "fmt"

// Cipher is an ESP encryption (or combined-mode) transform.
type Cipher uint8

// The ESP transforms a flow can use. The zero value is NULL encryption.
const (
	// CipherNULL is ENCR_NULL (RFC 2410): the payload travels in cleartext.
	CipherNULL Cipher = iota
	// CipherNullAuthAESGMAC is ENCR_NULL_AUTH_AES_GMAC (RFC 4543): cleartext
	// payload behind an 8-byte IV, authenticated by a 16-byte GMAC.
	CipherNullAuthAESGMAC
	// CipherAESCBC is AES-CBC (RFC 3602) with a 16-byte IV.
	CipherAESCBC
	// CipherAESCTR is AES-CTR (RFC 3686) with an 8-byte IV.
	CipherAESCTR
	// CipherAESGCM is AES-GCM (RFC 4106) with an 8-byte IV and an 8, 12 or
	// 16-byte ICV.
	CipherAESGCM
	// CipherChaCha20Poly1305 is ChaCha20-Poly1305 (RFC 7634): 8-byte IV,
	// 16-byte ICV.
	CipherChaCha20Poly1305
	// Cipher3DES is 3DES-CBC (RFC 2451) with an 8-byte IV.
	Cipher3DES
	numCiphers
)

// String returns the cipher's name as the corpus labels spell it.
func (c Cipher) String() string {
	switch c {
	case CipherNULL:
		return "NULL"
	case CipherNullAuthAESGMAC:
		return "ENCR_NULL_AUTH_AES_GMAC"
	case CipherAESCBC:
		return "AES-CBC"
	case CipherAESCTR:
		return "AES-CTR"
	case CipherAESGCM:
		return "AES-GCM"
	case CipherChaCha20Poly1305:
		return "CHACHA20-POLY1305"
	case Cipher3DES:
		return "3DES"
	}
	return fmt.Sprintf("Cipher(%d)", uint8(c))
}

// Cleartext reports whether the cipher leaves the payload readable on the
// wire, which is what an ESP-NULL classifier has to detect.
func (c Cipher) Cleartext() bool { return c == CipherNULL || c == CipherNullAuthAESGMAC }

// Combined reports whether the cipher computes its own ICV, in which case a
// flow's Auth is ignored.
func (c Cipher) Combined() bool {
	return c == CipherNullAuthAESGMAC || c == CipherAESGCM || c == CipherChaCha20Poly1305
}

// IVLen is the length of the explicit IV that precedes the payload.
func (c Cipher) IVLen() int {
	switch c {
	case CipherAESCBC:
		return 16
	case CipherNULL:
		return 0
	}
	return 8
}

// align is the alignment the padded payload (payload, padding, pad length and
// next header) must reach: the block size for CBC modes, else RFC 4303's
// 4-byte minimum.
func (c Cipher) align() int {
	switch c {
	case CipherAESCBC:
		return 16
	case Cipher3DES:
		return 8
	}
	return 4
}

// Auth is an ESP integrity transform, used with the non-combined ciphers.
type Auth uint8

// The integrity transforms. The zero value is no integrity (no ICV).
const (
	// AuthNone sends no ICV.
	AuthNone Auth = iota
	// AuthHMACSHA1 is HMAC-SHA1-96 (RFC 2404): 12-byte ICV.
	AuthHMACSHA1
	// AuthHMACSHA256 is HMAC-SHA-256-128 (RFC 4868): 16-byte ICV.
	AuthHMACSHA256
	// AuthHMACSHA384 is HMAC-SHA-384-192 (RFC 4868): 24-byte ICV.
	AuthHMACSHA384
	// AuthHMACSHA512 is HMAC-SHA-512-256 (RFC 4868): 32-byte ICV.
	AuthHMACSHA512
	numAuths
)

// String returns the integrity algorithm's name as the corpus labels spell it.
func (a Auth) String() string {
	switch a {
	case AuthNone:
		return "NULL"
	case AuthHMACSHA1:
		return "HMAC-SHA1-96"
	case AuthHMACSHA256:
		return "SHA2-256-128"
	case AuthHMACSHA384:
		return "SHA2-384-192"
	case AuthHMACSHA512:
		return "SHA2-512-256"
	}
	return fmt.Sprintf("Auth(%d)", uint8(a))
}

// ICVLen is the length of the truncated HMAC the algorithm appends.
func (a Auth) ICVLen() int {
	switch a {
	case AuthHMACSHA1:
		return 12
	case AuthHMACSHA256:
		return 16
	case AuthHMACSHA384:
		return 24
	case AuthHMACSHA512:
		return 32
	}
	return 0
}

// keyLen is the HMAC key length RFC 2404 and RFC 4868 prescribe: the
// hash's output size.
func (a Auth) keyLen() int {
	switch a {
	case AuthHMACSHA1:
		return 20
	case AuthHMACSHA256:
		return 32
	case AuthHMACSHA384:
		return 48
	case AuthHMACSHA512:
		return 64
	}
	return 0
}
