package ikecrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/espy-dpi/espy/ike/message"
)

// SKCipher protects Encrypted payloads in one direction of an IKE SA. For
// sending, use the keys of the local role (SK_ei/SK_ai for the initiator);
// for receiving, those of the peer.
type SKCipher struct {
	encr  *Encr
	block cipher.Block // AES-CBC and AES-CTR
	aead  cipher.AEAD  // AES-GCM (full 16-byte tag) and ChaCha20-Poly1305
	salt  []byte       // AEAD salt / CTR nonce
	mac   func() hash.Hash
	icv   int
	// ctr makes IVs for the counter-based modes unique per key (RFC 5282
	// section 3.1, RFC 5930 section 2); CBC takes random IVs.
	ctr atomic.Uint64
}

// NewSKCipher builds the SK payload protection for encryption transform
// encrID with keyBits (ignored where fixed), integrity transform integID
// (AUTH_NONE for AEAD), and the keys derived for this direction.
func NewSKCipher(encrID uint16, keyBits int, integID uint16, encrKey, integKey []byte) (*SKCipher, error) {
	e, err := LookupEncr(encrID)
	if err != nil {
		return nil, err
	}
	if !e.IKE {
		return nil, fmt.Errorf("ikecrypto: %s cannot protect IKE messages: %w", e.Name, ErrUnsupported)
	}
	bits, err := e.CheckKeyBits(keyBits)
	if err != nil {
		return nil, err
	}
	if len(encrKey) != e.KeyLen(bits) {
		return nil, fmt.Errorf("ikecrypto: %s key of %d bytes, want %d: %w", e.Name, len(encrKey), e.KeyLen(bits), ErrKeyLength)
	}
	c := &SKCipher{encr: e}
	key, salt := encrKey[:bits/8], encrKey[bits/8:]
	c.salt = append([]byte(nil), salt...)
	switch {
	case e.ID == message.ENCR_CHACHA20_POLY1305:
		if c.aead, err = chacha20poly1305.New(key); err != nil {
			return nil, fmt.Errorf("ikecrypto: %s: %w", e.Name, err)
		}
	default:
		if c.block, err = aes.NewCipher(key); err != nil {
			return nil, fmt.Errorf("ikecrypto: %s: %w", e.Name, err)
		}
		if e.AEAD {
			if c.aead, err = cipher.NewGCM(c.block); err != nil {
				return nil, fmt.Errorf("ikecrypto: %s: %w", e.Name, err)
			}
		}
	}
	if e.AEAD {
		if integID != message.AUTH_NONE {
			return nil, fmt.Errorf("ikecrypto: %s with integrity transform %d: %w", e.Name, integID, ErrUnsupported)
		}
		c.icv = e.ICVLen
		return c, nil
	}
	in, err := LookupInteg(integID)
	if err != nil {
		return nil, err
	}
	if in.Hash == nil {
		return nil, fmt.Errorf("ikecrypto: %s cannot protect IKE messages: %w", in.Name, ErrUnsupported)
	}
	if len(integKey) != in.KeyLen {
		return nil, fmt.Errorf("ikecrypto: %s key of %d bytes, want %d: %w", in.Name, len(integKey), in.KeyLen, ErrKeyLength)
	}
	ik := append([]byte(nil), integKey...)
	h := in.Hash
	c.mac = func() hash.Hash { return hmac.New(h, ik) }
	c.icv = in.ICVLen
	return c, nil
}

// padBlock is the alignment of IV-less plaintext | padding | pad length.
func (c *SKCipher) padBlock() int {
	if c.encr.ID == message.ENCR_AES_CBC {
		return aes.BlockSize
	}
	// Counter modes and AEADs need no alignment.
	return 1
}

// SealedLen returns the SK payload body length (IV, ciphertext, ICV) that
// Seal produces for plainLen bytes of inner payloads.
func (c *SKCipher) SealedLen(plainLen int) int {
	b := c.padBlock()
	padded := (plainLen + 1 + b - 1) / b * b
	return c.encr.IVLen + padded + c.icv
}

// Seal appends IV | ciphertext | ICV to head and returns the result. head
// must be the whole message up to and including the SK generic header, with
// the IKE header Length and SK payload length already set for
// SealedLen(len(plain)): it is the AEAD additional data, and for the other
// modes the ICV covers it.
func (c *SKCipher) Seal(head, plain []byte) ([]byte, error) {
	b := c.padBlock()
	padLen := (b - (len(plain)+1)%b) % b
	n := c.SealedLen(len(plain))
	// Room for a full 16-byte AEAD tag even when the ICV is truncated, so
	// the AEAD seals in place.
	out := make([]byte, len(head), len(head)+n+16)
	copy(out, head)
	iv := out[len(out) : len(out)+c.encr.IVLen]
	if c.encr.ID == message.ENCR_AES_CBC {
		if _, err := rand.Read(iv); err != nil {
			return nil, fmt.Errorf("ikecrypto: IV: %w", err)
		}
	} else {
		binary.BigEndian.PutUint64(iv, c.ctr.Add(1))
	}
	out = out[:len(out)+len(iv)]
	// Padding content is arbitrary (RFC 7296 3.14); zeros it is.
	out = append(out, plain...)
	out = append(out, make([]byte, padLen)...)
	out = append(out, byte(padLen))
	return c.sealPadded(head, out, len(head)+len(iv)), nil
}

// sealPadded encrypts out[ptStart:] (plaintext with padding and pad
// length) in place, IV at out[len(head):ptStart], and appends the ICV.
func (c *SKCipher) sealPadded(head, out []byte, ptStart int) []byte {
	iv := out[len(head):ptStart]
	pt := out[ptStart:]
	switch {
	case c.aead != nil:
		nonce := c.nonce(iv)
		sealed := c.aead.Seal(pt[:0], nonce, pt, head)
		// The AEAD writes the full 16-byte tag; keep the negotiated ICV.
		out = append(out[:ptStart], sealed[:len(sealed)-c.aead.Overhead()+c.icv]...)
	case c.encr.ID == message.ENCR_AES_CBC:
		cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(pt, pt)
	default: // AES-CTR
		cipher.NewCTR(c.block, c.ctrBlock(iv)).XORKeyStream(pt, pt)
	}
	if c.mac != nil {
		m := c.mac()
		m.Write(out)
		out = append(out, m.Sum(nil)[:c.icv]...)
	}
	return out
}

// nonce returns salt | IV (RFC 5282 section 4, RFC 7634 section 2).
func (c *SKCipher) nonce(iv []byte) []byte {
	n := make([]byte, 0, 12)
	return append(append(n, c.salt...), iv...)
}

// ctrBlock returns the first AES-CTR counter block: nonce | IV | 1
// (RFC 3686 section 4, used by IKEv2 per RFC 5930).
func (c *SKCipher) ctrBlock(iv []byte) []byte {
	blk := make([]byte, 0, aes.BlockSize)
	blk = append(append(blk, c.salt...), iv...)
	return binary.BigEndian.AppendUint32(blk, 1)
}

// Open verifies and decrypts the SK payload of msg, whose body starts at
// offset body (everything before it is additional data / ICV-covered), and
// returns the inner payload chain without padding. The result aliases msg.
func (c *SKCipher) Open(msg []byte, body int) ([]byte, error) {
	if body < 0 || body > len(msg) {
		return nil, fmt.Errorf("ikecrypto: SK body offset %d: %w", body, ErrShort)
	}
	data := msg[body:]
	ivLen := c.encr.IVLen
	if len(data) < ivLen+1+c.icv {
		return nil, fmt.Errorf("ikecrypto: SK payload of %d bytes: %w", len(data), ErrShort)
	}
	iv := data[:ivLen]
	ct := data[ivLen : len(data)-c.icv]
	icv := data[len(data)-c.icv:]
	var pt []byte
	switch {
	case c.aead != nil:
		var err error
		if pt, err = c.openAEAD(msg[:body], iv, ct, icv); err != nil {
			return nil, err
		}
	default:
		m := c.mac()
		m.Write(msg[:len(msg)-c.icv])
		if !hmac.Equal(m.Sum(nil)[:c.icv], icv) {
			return nil, fmt.Errorf("ikecrypto: SK payload ICV: %w", ErrIntegrity)
		}
		pt = ct
		if c.encr.ID == message.ENCR_AES_CBC {
			if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
				return nil, fmt.Errorf("ikecrypto: CBC ciphertext of %d bytes: %w", len(ct), ErrPadding)
			}
			cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(pt, ct)
		} else {
			cipher.NewCTR(c.block, c.ctrBlock(iv)).XORKeyStream(pt, ct)
		}
	}
	if len(pt) == 0 {
		return nil, fmt.Errorf("ikecrypto: empty plaintext: %w", ErrPadding)
	}
	padLen := int(pt[len(pt)-1])
	if padLen+1 > len(pt) {
		return nil, fmt.Errorf("ikecrypto: pad length %d of %d bytes: %w", padLen, len(pt), ErrPadding)
	}
	return pt[:len(pt)-1-padLen], nil
}

func (c *SKCipher) openAEAD(aad, iv, ct, icv []byte) ([]byte, error) {
	nonce := c.nonce(iv)
	if c.icv == c.aead.Overhead() {
		// Decrypt in place: ct and icv are adjacent in the message.
		sealed := ct[:len(ct)+len(icv)]
		pt, err := c.aead.Open(ct[:0], nonce, sealed, aad)
		if err != nil {
			return nil, fmt.Errorf("ikecrypto: SK payload tag: %w", ErrIntegrity)
		}
		return pt, nil
	}
	// Truncated GCM tags (8 and 12 bytes, RFC 5282): crypto/cipher only
	// verifies full tags of 12 or more bytes, so recover the plaintext with
	// the GCM keystream (CTR from inc32(J0) = salt|IV|2), recompute the full
	// tag with Seal and compare its leading bytes in constant time.
	blk := make([]byte, 0, aes.BlockSize)
	blk = binary.BigEndian.AppendUint32(append(append(blk, c.salt...), iv...), 2)
	pt := make([]byte, len(ct))
	cipher.NewCTR(c.block, blk).XORKeyStream(pt, ct)
	full := c.aead.Seal(nil, nonce, pt, aad)
	tag := full[len(full)-c.aead.Overhead():][:c.icv]
	if subtle.ConstantTimeCompare(tag, icv) != 1 {
		clear(pt)
		return nil, fmt.Errorf("ikecrypto: SK payload tag: %w", ErrIntegrity)
	}
	return pt, nil
}

// ICVLen returns the length of the integrity check value.
func (c *SKCipher) ICVLen() int { return c.icv }
