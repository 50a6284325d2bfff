package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/espy-dpi/espy/ike/message"
)

// kind is how a transform protects the payload.
type kind uint8

const (
	kindNull     kind = iota // ENCR_NULL + MAC
	kindCBC                  // AES-CBC + MAC (RFC 3602)
	kindCTR                  // AES-CTR + MAC (RFC 3686)
	kindAEAD                 // AES-GCM (RFC 4106), ChaCha20-Poly1305 (RFC 7634)
	kindGMAC                 // ENCR_NULL_AUTH_AES_GMAC (RFC 4543)
	kindGCMTrunc             // AES-GCM with an 8-byte ICV
)

// transform is the keyed algorithm state of one direction.
type transform struct {
	kind  kind
	ivLen int
	icv   int
	align int // the payload, padding and trailer end on this boundary

	block cipher.Block // CBC, CTR, GCM-8 keystream
	nonce [4]byte      // CTR nonce or AEAD salt from the keying material
	mac   mac          // non-AEAD
	aead  cipher.AEAD  // AEAD, GMAC, GCM-8 (with a 16-byte tag)
}

// newTransform keys encryption transform encrID (encrKey is KEYMAT's key
// followed by its salt or nonce, RFC 4106 8.1, RFC 3686 5.1) and integrity
// transform integID (AUTH_NONE for AEAD).
func newTransform(encrID uint16, encrKey []byte, integID uint16, integKey []byte) (*transform, error) {
	t := &transform{align: 4}
	aeadKey := func(want ...int) ([]byte, error) {
		if len(encrKey) < 4 {
			return nil, fmt.Errorf("esp: encryption transform %d: key of %d bytes: %w", encrID, len(encrKey), ErrUnsupported)
		}
		k := encrKey[:len(encrKey)-4]
		copy(t.nonce[:], encrKey[len(k):])
		for _, w := range want {
			if len(k) == w {
				return k, nil
			}
		}
		return nil, fmt.Errorf("esp: encryption transform %d: key of %d bytes: %w", encrID, len(k), ErrUnsupported)
	}
	aesSizes := []int{16, 24, 32}
	switch encrID {
	case message.ENCR_NULL:
		if len(encrKey) != 0 {
			return nil, fmt.Errorf("esp: ENCR_NULL takes no key: %w", ErrUnsupported)
		}
		t.kind = kindNull
	case message.ENCR_AES_CBC:
		b, err := aes.NewCipher(encrKey)
		if err != nil {
			return nil, fmt.Errorf("esp: aes-cbc: %w: %w", ErrUnsupported, err)
		}
		t.kind, t.block, t.ivLen, t.align = kindCBC, b, 16, 16
	case message.ENCR_AES_CTR:
		k, err := aeadKey(aesSizes...)
		if err != nil {
			return nil, err
		}
		t.block, _ = aes.NewCipher(k)
		t.kind, t.ivLen = kindCTR, 8
	case message.ENCR_AES_GCM_8, message.ENCR_AES_GCM_12, message.ENCR_AES_GCM_16, message.ENCR_NULL_AUTH_AES_GMAC:
		k, err := aeadKey(aesSizes...)
		if err != nil {
			return nil, err
		}
		t.block, _ = aes.NewCipher(k)
		t.ivLen, t.icv = 8, 16
		switch encrID {
		case message.ENCR_AES_GCM_8:
			// The standard library refuses tags under 12 bytes; a
			// truncated GCM tag is the prefix of the full one.
			t.kind, t.icv = kindGCMTrunc, 8
		case message.ENCR_AES_GCM_12:
			t.kind, t.icv = kindAEAD, 12
		case message.ENCR_AES_GCM_16:
			t.kind = kindAEAD
		default:
			t.kind = kindGMAC
		}
		tag := t.icv
		if t.kind != kindAEAD {
			tag = 16
		}
		t.aead, err = cipher.NewGCMWithTagSize(t.block, tag)
		if err != nil {
			return nil, fmt.Errorf("esp: gcm: %w", err)
		}
	case message.ENCR_CHACHA20_POLY1305:
		k, err := aeadKey(chacha20poly1305.KeySize)
		if err != nil {
			return nil, err
		}
		t.aead, _ = chacha20poly1305.New(k)
		t.kind, t.ivLen, t.icv = kindAEAD, 8, 16
	default:
		return nil, fmt.Errorf("esp: encryption transform %d: %w", encrID, ErrUnsupported)
	}
	switch t.kind {
	case kindNull, kindCBC, kindCTR:
		if integID == message.AUTH_NONE {
			// RFC 4303 3.2: confidentiality without integrity is
			// not offered here, and NULL/NULL is forbidden.
			return nil, fmt.Errorf("esp: encryption transform %d without integrity: %w", encrID, ErrUnsupported)
		}
		m, err := newMAC(integID, integKey)
		if err != nil {
			return nil, err
		}
		t.mac, t.icv = m, m.size()
	default:
		if integID != message.AUTH_NONE || len(integKey) != 0 {
			return nil, fmt.Errorf("esp: combined-mode transform %d with integrity %d: %w", encrID, integID, ErrUnsupported)
		}
	}
	return t, nil
}

// padLen returns the padding for a payload of n bytes: payload, padding,
// Pad Length and Next Header end on the alignment boundary.
func (t *transform) padLen(n int) int {
	return (t.align - (n+2)%t.align) % t.align
}
